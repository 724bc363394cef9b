// native-cluster/register: with --import or --require (or NODE_OPTIONS), every
// way of asking for the cluster builtin returns native-cluster, in the
// primary and in its workers, on Node 20, 22 and 24; and the documented
// example, its `import cluster from 'node:cluster'` untouched, runs on the
// native primary.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MAJORS, installHint, nodeBinaries } from './fixtures/register/nodes.mjs';
import { untilRefusalsEnd, addonFileRe } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const appDir = path.join(here, 'fixtures', 'register');
const seed = path.join(here, '..', 'examples', 'seed-unchanged.mjs');

function runApp(bin, args, { env = {}, timeout = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      cwd: appDir,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeout);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const reports = stdout.split('\n').filter((l) => l.startsWith('@@')).map((l) => JSON.parse(l.slice(2)));
      resolve({ code, signal, stdout, stderr, reports });
    });
  });
}

function assertAllNative(r, execArgv, version) {
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '', 'no warnings');
  const primary = r.reports.find((x) => x.role === 'primary');
  const worker = r.reports.find((x) => x.role === 'worker');
  assert.ok(primary && worker, r.stdout);
  for (const report of [primary, worker]) {
    assert.equal(report.node, version);
    assert.deepEqual(report.execArgv, execArgv, `${report.role} execArgv`);
    const failed = Object.entries(report.checks).filter(([, ok]) => !ok).map(([k]) => k);
    assert.deepEqual(failed, [], `${report.role}: not native-cluster`);
    // getBuiltinModule exists from Node 20.16 on; when it does, it is covered.
    assert.ok(Object.keys(report.checks).length >= (process.getBuiltinModule ? 10 : 7));
  }
  // The primary runs on the addon; the worker is a stock Node process (its
  // native-cluster is Node's own worker view).
  assert.equal(primary.native, true, 'primary has the addon loaded');
  assert.equal(worker.native, false, 'worker runs without the addon');
}

const get = (port) => new Promise((resolve, reject) => {
  http.get({ host: '127.0.0.1', port, agent: false }, (res) => {
    let body = '';
    res.on('data', (d) => { body += d; });
    res.on('end', () => resolve(body));
  }).on('error', reject);
});

const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };

const nodes = nodeBinaries();

for (const major of MAJORS) {
  const node = nodes.get(major);
  describe(`register on Node ${major}${node ? ` (${node.version})` : ''}`, { skip: node ? false : installHint(major) }, () => {
    const forms = [
      ['--import', 'app.mjs'],
      ['--require', 'app.cjs'],
      ['--require', 'app.mjs'],
      ['--import', 'app.cjs'],
    ];
    for (const [flag, app] of forms) {
      test(`${flag} native-cluster/register ${app}: require, import (default, namespace, named, dynamic), getBuiltinModule and third-party packages get native-cluster in primary and worker`, async () => {
        const r = await runApp(node.bin, [flag, 'native-cluster/register', app]);
        assertAllNative(r, [flag, 'native-cluster/register'], node.version);
      });
    }

    test('NODE_OPTIONS="--import native-cluster/register" reaches the workers too', async () => {
      const r = await runApp(node.bin, ['app.mjs'], { env: { NODE_OPTIONS: '--import native-cluster/register' } });
      assertAllNative(r, [], node.version);
    });

    test('without the hook the same app gets node:cluster (the checks are not vacuous)', async () => {
      const r = await runApp(node.bin, ['app.cjs'], { env: { NODE_OPTIONS: '' } });
      assert.equal(r.code, 0, r.stderr);
      const primary = r.reports.find((x) => x.role === 'primary');
      const worker = r.reports.find((x) => x.role === 'worker');
      for (const check of ['require node:cluster', 'require cluster', 'import() cluster', 'third-party cjs', 'third-party esm']) {
        assert.equal(primary.checks[check], false, check);
      }
      assert.equal(worker.checks['import() node:cluster'], false);
    });

    test('import \'native-cluster/register\' in code after a static import of node:cluster: one warning, from the primary, naming the preload', async () => {
      const r = await runApp(node.bin, ['late-import.mjs'], { env: { NODE_OPTIONS: '' } });
      assert.equal(r.code, 0, r.stderr);
      // What the warning is about: this module's own import was linked first.
      assert.deepEqual(r.reports.map((x) => x.role).sort(), ['primary', 'worker'], r.stdout);
      assert.equal(r.reports.find((x) => x.role === 'primary').native, false);
      const warnings = r.stderr.split('\n').filter((l) => l.includes('NATIVE_CLUSTER_REGISTER_LATE'));
      assert.equal(warnings.length, 1, r.stderr);
      assert.match(warnings[0], /node:cluster was loaded before native-cluster\/register.*: node --import native-cluster\/register late-import\.mjs$/);
    });

    test('no warning where nothing holds Node\'s cluster: register in code before require() or import(), or preloaded', async () => {
      const runs = [
        [['late-dynamic.mjs'], 1],
        [['late-require.cjs'], 1],
        [['--import', 'native-cluster/register', 'late-import.mjs'], 2],
        [['--require', 'native-cluster/register', 'late-import.mjs'], 2],
      ];
      for (const [args, reports] of runs) {
        const r = await runApp(node.bin, args, { env: { NODE_OPTIONS: '' } });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stderr, '', args.join(' '));
        assert.equal(r.reports.length, reports, r.stdout);
        for (const report of r.reports) assert.equal(report.native, true, `${args.join(' ')}: ${report.role}`);
      }
    });

    test('examples/seed-unchanged.mjs (import cluster from \'node:cluster\') runs on the native primary', async () => {
      const n = availableParallelism();
      const child = spawn(node.bin, ['--import', 'native-cluster/register', seed], {
        cwd: path.dirname(seed),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stderr.on('data', (d) => { err += d; });
      const count = (re) => (out.match(re) || []).length;
      try {
        await new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`timed out:\n${out}\n${err}`)), 15000);
          child.on('exit', (code) => reject(new Error(`exited ${code}:\n${out}\n${err}`)));
          child.stdout.on('data', (d) => {
            out += d;
            // Stock node:cluster loses this message for ES module workers
            // (sent before their listener exists); native-cluster holds it.
            if (count(/Worker received: {2}\{ msg: 'Hello worker' \}/g) === n && count(/Worker \d+ started/g) === n) {
              clearTimeout(timer);
              resolve();
            }
          });
        });
        assert.match(out, new RegExp(`^Primary ${child.pid} is running$`, 'm'));
        assert.equal(count(/Primary forked worker: {2}\d+/g), n);
        // The primary process has the addon mapped: the native core serves.
        const maps = readFileSync(`/proc/${child.pid}/maps`, 'utf8');
        assert.match(maps, addonFileRe);
        await untilRefusalsEnd(() => get(8000));
        for (let i = 0; i < 2 * n; i++) assert.equal(await get(8000), 'hello world\n');
        assert.equal(err, '');
      } finally {
        const pids = [...out.matchAll(/Worker (\d+) started/g)].map((m) => Number(m[1]));
        child.removeAllListeners('exit');
        if (child.exitCode === null) {
          child.kill('SIGTERM');
          await new Promise((resolve) => child.on('exit', resolve));
        }
        const deadline = Date.now() + 5000;
        while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(pids.filter(alive), []);
      }
    });
  });
}
