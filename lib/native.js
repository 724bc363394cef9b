'use strict';
// The compiled addon, loaded on first use: requiring the package in a worker
// costs no dlopen. Each stub replaces itself (and all others) with the
// addon's functions, so later calls go straight to native code.
//
// Where it comes from, in order: the file `npm run build` leaves in the
// package (native-cluster.<platform>-<arch>-<abi>.node), then the platform
// package napi-rs publishes (native-cluster-<platform>-<arch>-<abi>); abi is
// gnu or musl by the running C library. `probe()` says whether there is
// one, and what was tried when there is none.

const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const arch = { x64: 'x64', arm64: 'arm64' }[process.arch] || process.arch;

// musl's dynamic loader is /lib/ld-musl-<arch>.so.1; glibc has none such.
// (Cheaper than process.report, which builds a whole diagnostic report;
// one stat where the loader's name is known, as this runs at require.)
const MUSL_ARCH = { x64: 'x86_64', arm64: 'aarch64', ia32: 'i386', riscv64: 'riscv64', s390x: 's390x' };

function abi() {
  if (process.platform !== 'linux') return null;
  const known = MUSL_ARCH[process.arch];
  if (known !== undefined) return fs.existsSync(`/lib/ld-musl-${known}.so.1`) ? 'musl' : 'gnu';
  try {
    return fs.readdirSync('/lib').some((f) => f.startsWith('ld-musl-')) ? 'musl' : 'gnu';
  } catch {
    return 'gnu';
  }
}

const target = [process.platform, arch, abi()].filter(Boolean).join('-');
const candidates = [
  path.join(root, `native-cluster.${target}.node`),
  `native-cluster-${target}`,
];

const FUNCTIONS = ['start', 'setRef', 'configure', 'spawn', 'pid', 'send', 'sendText',
  'disconnect', 'closeChannel', 'kill', 'flush', 'listened', 'closeFd', 'gate',
  'parentDeathSignal', 'activate', 'stats', 'peerUid'];

let loaded = null;
let failure = null;

function load() {
  if (loaded !== null) return loaded;
  if (failure !== null) throw failure;
  const tried = [];
  for (const candidate of candidates) {
    try {
      loaded = require(candidate);
      return loaded;
    } catch (err) {
      tried.push(`${candidate}: ${err.code === 'MODULE_NOT_FOUND' ? 'not found' : err.message.split('\n')[0]}`);
    }
  }
  // One line, and no stack frames: they would only point into this loader.
  const { makeError } = require('./errors.js');
  failure = makeError(Error, 'ERR_NATIVE_CLUSTER_ADDON', `native-cluster has no usable addon for ${target} ` +
    `(Node ${process.version}); tried ${tried.join('; ')}; ` +
    'build one with `npm run build` (needs a Rust toolchain: https://rustup.rs)');
  failure.stack = `Error [ERR_NATIVE_CLUSTER_ADDON]: ${failure.message}`;
  Object.defineProperties(failure, { target: { value: target }, tried: { value: tried } });
  throw failure;
}

// Whether there is an addon for this platform, without loading it (the
// dlopen waits for the first fork): { ok: true } or { ok: false, error }.
// One that is there but does not load fails that first call, saying why.
function probe() {
  const present = candidates.some((c) => {
    try {
      return path.isAbsolute(c) ? fs.statSync(c).isFile() : Boolean(require.resolve(c));
    } catch {
      return false;
    }
  });
  if (present) return { ok: true };
  try {
    load();
    return { ok: true };
  } catch (error) {
    return { ok: false, error };
  }
}

for (const name of FUNCTIONS) {
  module.exports[name] = function loadThenCall(...args) {
    const addon = load();
    for (const n of FUNCTIONS) module.exports[n] = addon[n];
    return module.exports[name](...args);
  };
}

Object.defineProperty(module.exports, 'probe', { value: probe });
Object.defineProperty(module.exports, 'target', { value: target });
