// The package as a user gets it: `npm pack` here, then `npm install
// <tarball>` in a new project on a PATH without a Rust toolchain. The
// install runs no lifecycle script (npm 11 warns about every one it finds),
// the tarball carries the addon, LICENSE, README and the README's examples,
// the shipped seed example runs from the installed package with every worker
// greeted, and named imports and native-cluster/register (--import and
// --require) work from it.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile, spawnSync } from 'node:child_process';
import { here, addonFile } from './helpers.mjs';
import { runSeedExample } from './seed_example.mjs';

const root = path.join(here, '..');

const npm = (args, opts) => new Promise((resolve) => {
  execFile('npm', args, { ...opts, timeout: 120000 }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
});

// PATH without the directories that hold cargo or rustc.
function pathWithoutRust() {
  return process.env.PATH.split(path.delimiter)
    .filter((d) => !['cargo', 'rustc'].some((b) => fs.existsSync(path.join(d, b))))
    .join(path.delimiter);
}

test('npm pack, then npm install <tarball> without Rust: no lifecycle script, the seed example runs', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nc-pack-'));
  try {
    const packed = await npm(['pack', '--json', '--pack-destination', tmp], { cwd: root });
    assert.equal(packed.code, 0, packed.stderr);
    const [info] = JSON.parse(packed.stdout);
    const files = info.files.map((f) => f.path);
    // The README's examples ship (it names them by path); the Rust ones are
    // the crate's, not the package's.
    const examples = ['examples/hello.mjs', 'examples/seed.mjs', 'examples/seed-unchanged.mjs'];
    for (const f of ['LICENSE', 'README.md', 'index.js', 'index.d.ts', 'register', 'register.d.ts', addonFile, ...examples]) {
      assert.ok(files.includes(f), `${f} is not in the tarball: ${files.join(', ')}`);
    }
    assert.equal(files.some((f) => f.startsWith('src/') || f.startsWith('__test__/') || f.endsWith('.rs')), false);
    // postpack put the clone's manifest back as it was.
    assert.ok(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).scripts.prepare);

    const project = path.join(tmp, 'app');
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    const env = { ...process.env, PATH: pathWithoutRust() };
    assert.notEqual(spawnSync('cargo', ['--version'], { env }).status, 0, 'cargo is still on PATH');
    const installed = await npm(['install', '--no-audit', '--no-fund', path.join(tmp, info.filename)], { cwd: project, env });
    assert.equal(installed.code, 0, installed.stderr);
    const output = installed.stdout + installed.stderr;
    assert.doesNotMatch(output, /install-scripts|lifecycle|prepare|allowScripts/i, output);
    const manifest = JSON.parse(fs.readFileSync(path.join(project, 'node_modules', 'native-cluster', 'package.json'), 'utf8'));
    for (const hook of ['preinstall', 'install', 'postinstall', 'prepare']) assert.equal(manifest.scripts[hook], undefined, hook);

    // The shipped example, run where the README says it is.
    const { err } = await runSeedExample(path.join(project, 'node_modules', 'native-cluster', 'examples', 'seed.mjs'), { cwd: project, env });
    assert.doesNotMatch(err, /Warning/, err);

    // The other ways an app reaches the installed package: named imports,
    // and native-cluster/register through either flag.
    const runScript = (name, lines, flags = []) => {
      fs.writeFileSync(path.join(project, name), lines.join('\n'));
      const r = spawnSync(process.execPath, [...flags, name], { cwd: project, env, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.trim();
    };
    const named = runScript('named.mjs', [
      "import cluster, { fork, isPrimary, SCHED_RR, SCHED_STICKY, Worker } from 'native-cluster';",
      "import * as ns from 'native-cluster';",
      'console.log(JSON.stringify({ fork: fork === cluster.fork, isPrimary, SCHED_RR, sticky: SCHED_STICKY === cluster.SCHED_STICKY,',
      "  Worker: typeof Worker, ns: ns.default === cluster && ns.setupPrimary === cluster.setupPrimary }));",
    ]);
    assert.deepEqual(JSON.parse(named), { fork: true, isPrimary: true, SCHED_RR: 2, sticky: true, Worker: 'function', ns: true });
    const hooked = [
      "import cluster from 'node:cluster';",
      "import { createRequire } from 'node:module';",
      "import native from 'native-cluster';",
      "console.log(cluster === native && createRequire(import.meta.url)('cluster') === native && typeof native.SCHED_STICKY === 'number');",
    ];
    for (const flag of ['--import', '--require']) {
      assert.equal(runScript('hooked.mjs', hooked, [flag, 'native-cluster/register']), 'true', `${flag} native-cluster/register`);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
