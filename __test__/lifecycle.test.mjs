// The life of one worker, event by event, must read the same with
// native-cluster as with stock node:cluster.
import test from 'node:test';
import assert from 'node:assert/strict';
import { run, primaryEvents, addonFile } from './helpers.mjs';

test('fork, online, listening, messages, disconnect and exit match node:cluster', async () => {
  const [native, stock] = await Promise.all([
    run('lifecycle.mjs', { impl: 'native' }),
    run('lifecycle.mjs', { impl: 'stock' }),
  ]);
  assert.equal(native.code, 0, native.stderr);
  assert.equal(stock.code, 0, stock.stderr);
  const ours = primaryEvents(native);
  assert.deepEqual(ours, primaryEvents(stock));
  // And the sequence is the one Node documents, not merely equal.
  assert.deepEqual(ours.map((e) => e[0]), [
    'forked', 'cluster setup', 'cluster fork', 'worker online', 'cluster online',
    'worker listening', 'cluster listening', 'cluster message', 'worker message',
    'worker disconnect', 'cluster disconnect', 'worker exit', 'cluster exit', 'primary exit',
  ]);
});

// The addon is loaded on first use; every function it exports has a stub.
test('requiring the package loads neither the addon nor node:cluster; the first fork loads the addon', async () => {
  const { execFileSync } = await import('node:child_process');
  const root = new URL('..', import.meta.url).pathname;
  const script = `
    const mapped = () => /native-cluster\\.[^/]*\\.node/.test(require('node:fs').readFileSync('/proc/self/maps', 'utf8'));
    const cluster = require(${JSON.stringify(root)});
    const native = require(${JSON.stringify(root + 'lib/native.js')});
    const stubs = Object.keys(native).sort();
    const before = { addon: mapped(), nodeCluster: process.moduleLoadList.includes('NativeModule cluster') };
    cluster.setupPrimary({ exec: '/dev/null', execArgv: [] });
    cluster.fork();
    const exported = Object.keys(require(${JSON.stringify(root + addonFile)})).sort();
    console.log(JSON.stringify({ before, after: mapped(), stubs, exported }));
    cluster.disconnect();
  `;
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20000 }));
  assert.deepEqual(out.before, { addon: false, nodeCluster: false });
  assert.equal(out.after, true);
  assert.deepEqual(out.stubs, out.exported);
});
