// Where the addon cannot load, native-cluster is node:cluster after one
// warning (or, with NATIVE_CLUSTER_REQUIRE_NATIVE=1, an error that says
// what was tried). Made unloadable for real: a copy of the package without
// its .node file. An addon that is there but does not load (a corrupt one
// here) fails the first fork with the same explanation.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { here, run, primaryEvents, target, addonFile } from './helpers.mjs';
import { runSeedExample } from './seed_example.mjs';

const root = path.join(here, '..');

function copyPackage(addon) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nc-fallback-'));
  for (const f of ['index.js', 'package.json']) fs.copyFileSync(path.join(root, f), path.join(dir, f));
  fs.cpSync(path.join(root, 'lib'), path.join(dir, 'lib'), { recursive: true });
  if (addon !== undefined) fs.writeFileSync(path.join(dir, addonFile), addon);
  return dir;
}

for (const [label, addon] of [['no addon file', undefined]]) {
  test(`fallback with ${label}: node:cluster after one warning; a worker serves; SCHED_STICKY throws clearly; availableParallelism() is ours`, async () => {
    const pkg = copyPackage(addon);
    try {
      const r = await run('fallback/app.cjs', { env: { PKG: pkg, NATIVE_CLUSTER_WORKERS: '3' }, timeout: 20000 });
      const res = primaryEvents(r).find((e) => e[0] === 'result')?.[1];
      assert.ok(res, r.stderr);
      assert.equal(res.isStock, true);
      assert.deepEqual(res.constants, [3, 4]);
      assert.equal(res.parallelism, 3);
      assert.match(res.body, /^stock worker 1$/);
      assert.equal(res.warnings.length, 1, JSON.stringify(res.warnings));
      assert.equal(res.warnings[0].code, 'NATIVE_CLUSTER_FALLBACK');
      assert.match(res.warnings[0].message, new RegExp(`no usable addon for ${target}`));
      assert.equal(res.sticky?.code, 'ERR_NATIVE_CLUSTER_UNAVAILABLE');
      assert.match(res.sticky.message, /SCHED_STICKY needs native-cluster's addon/);
    } finally {
      fs.rmSync(pkg, { recursive: true, force: true });
    }
  });
}

// The seed example installed beside a package without its addon, as
// `import cluster from 'native-cluster'` finds it.
function seedProject() {
  const project = fs.mkdtempSync(path.join(os.tmpdir(), 'nc-seed-'));
  fs.mkdirSync(path.join(project, 'node_modules'));
  fs.renameSync(copyPackage(undefined), path.join(project, 'node_modules', 'native-cluster'));
  fs.copyFileSync(path.join(root, 'examples', 'seed.mjs'), path.join(project, 'seed.mjs'));
  return project;
}

test('the seed example without the addon runs on node:cluster with exactly one warning on stderr', async () => {
  const project = seedProject();
  try {
    // node:cluster loses the greeting (sent before the worker listens for
    // messages), so only the workers' start and their answers are checked.
    const { err } = await runSeedExample(path.join(project, 'seed.mjs'), { cwd: project, greeted: false });
    const warnings = err.split('\n').filter((l) => /Warning/.test(l));
    assert.equal(warnings.length, 1, err);
    assert.match(warnings[0], new RegExp(`\\[NATIVE_CLUSTER_FALLBACK\\] Warning: using node:cluster instead: native-cluster has no usable addon for ${target}`));
  } finally {
    fs.rmSync(project, { recursive: true, force: true });
  }
});

test('the seed example without the addon and NATIVE_CLUSTER_REQUIRE_NATIVE=1 exits 1 with a one-line reason', async () => {
  const project = seedProject();
  try {
    const r = await new Promise((resolve) => {
      execFile(process.execPath, ['seed.mjs'], { cwd: project, env: { ...process.env, NATIVE_CLUSTER_REQUIRE_NATIVE: '1' }, timeout: 10000 },
        (err, stdout, stderr) => resolve({ code: err?.code, stdout, stderr }));
    });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    const reasons = r.stderr.split('\n').filter((l) => l.includes('no usable addon'));
    assert.equal(reasons.length, 1, r.stderr);
    assert.match(reasons[0], new RegExp(`ERR_NATIVE_CLUSTER_ADDON\\]: native-cluster has no usable addon for ${target} .*not found.*npm run build.*https://rustup\\.rs`));
  } finally {
    fs.rmSync(project, { recursive: true, force: true });
  }
});

test('NATIVE_CLUSTER_REQUIRE_NATIVE=1: no fallback; the error lists what was tried and how to build', async () => {
  const pkg = copyPackage(undefined);
  try {
    const out = await new Promise((resolve) => {
      execFile(process.execPath, ['-e', `try { require(${JSON.stringify(pkg)}); console.log('loaded'); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`],
        { env: { ...process.env, NATIVE_CLUSTER_REQUIRE_NATIVE: '1' } }, (err, stdout) => resolve(stdout.trim()));
    });
    const e = JSON.parse(out);
    assert.equal(e.code, 'ERR_NATIVE_CLUSTER_ADDON');
    assert.ok(e.message.includes(path.join(pkg, addonFile)), e.message);
    assert.match(e.message, new RegExp(`native-cluster-${target}: not found`));
    assert.match(e.message, /npm run build.*Rust toolchain/);
  } finally {
    fs.rmSync(pkg, { recursive: true, force: true });
  }
});

test('an addon that is there but does not load: the first fork throws what was tried', async () => {
  const pkg = copyPackage('not an ELF file');
  try {
    const out = await new Promise((resolve) => {
      execFile(process.execPath, ['-e', `const c = require(${JSON.stringify(pkg)});
        try { c.setupPrimary({ exec: '/dev/null' }); c.fork(); console.log('forked'); }
        catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`],
      (err, stdout) => resolve(stdout.trim()));
    });
    const e = JSON.parse(out);
    assert.equal(e.code, 'ERR_NATIVE_CLUSTER_ADDON');
    assert.match(e.message, new RegExp(`native-cluster\\.${target}\\.node: .*(too short|invalid ELF)`));
  } finally {
    fs.rmSync(pkg, { recursive: true, force: true });
  }
});
