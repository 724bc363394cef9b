#!/usr/bin/env node
'use strict';
// Builds the addon from source (`npm run build`, and `npm install` in a
// clone). On Linux with glibc, when cargo-zigbuild and zig are at hand
// (`pip install ziglang cargo-zigbuild`), it links against glibc 2.28, the
// floor of Node 20's own Linux binaries, so the .node loads wherever Node
// does; without them it builds for this machine's glibc and says so.
// Without a Rust toolchain it says so in one line instead of a stack trace.

const { spawnSync } = require('node:child_process');
const path = require('node:path');

const GLIBC_FLOOR = '2.28';
const root = path.join(__dirname, '..');

function has(command, args = ['--version']) {
  const r = spawnSync(command, args, { stdio: 'ignore' });
  return r.status === 0;
}

function fail(line) {
  process.stderr.write(`native-cluster: ${line}\n`);
  process.exit(1);
}

if (!has('cargo')) {
  fail('building from source needs a Rust toolchain (cargo is not on PATH); install it from https://rustup.rs, then run `npm run build`');
}

let napi;
try {
  const manifest = require.resolve('@napi-rs/cli/package.json', { paths: [root] });
  napi = path.join(path.dirname(manifest), require(manifest).bin.napi);
} catch {
  fail('building from source needs the devDependencies: run `npm install` in a clone of the repository');
}

const { target } = require('../lib/native.js');
const args = [napi, 'build', '--platform', '--release', '--no-js', '--dts', 'lib/binding.d.ts'];
const triple = { 'linux-x64-gnu': 'x86_64-unknown-linux-gnu', 'linux-arm64-gnu': 'aarch64-unknown-linux-gnu' }[target];
const zig = has('cargo-zigbuild') && (has('zig', ['version']) || has('python3', ['-m', 'ziglang', 'version']));
if (triple && zig) {
  args.push('--cross-compile', '--target', `${triple}.${GLIBC_FLOOR}`);
} else if (triple) {
  process.stderr.write(`native-cluster: cargo-zigbuild or zig not found; building for this machine's glibc (the binary may not load on older systems; \`pip install ziglang cargo-zigbuild\` builds for glibc ${GLIBC_FLOOR})\n`);
}

const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(r.status === null ? 1 : r.status);
