// How a worker's message reaches the primary's JavaScript: the I/O thread
// reads the channel and hands the batch to JavaScript through one
// thread-safe function. Observable results must be node:cluster's: every
// message, in order, also when the primary's JavaScript was blocked while
// the worker wrote; a listener's exception is an uncaught exception that
// stops nothing. And the core is one thread that leaves the scheduler's
// settings alone, in the primary and in the workers it starts.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { run, primaryEvents, fixture } from './helpers.mjs';

const done = (r) => primaryEvents(r).find((e) => e[0] === 'done')?.[1];

test('ping-pong: every reply in order; a throwing listener is an uncaught exception, as with node:cluster', async () => {
  const native = await run('wakeup.mjs');
  const stock = await run('wakeup.mjs', { impl: 'stock' });
  assert.equal(native.code, 0, native.stderr);
  assert.equal(stock.code, 0, stock.stderr);
  const n = done(native);
  assert.ok(n, native.stdout + native.stderr);
  assert.equal(n.inOrder, true);
  assert.deepEqual(n.tail, ['first', 'last']);
  assert.deepEqual(n.uncaught, ['thrown by a message listener']);
  assert.deepEqual(n, done(stock));
});

test('a worker streams while the primary\'s JavaScript is blocked: every message arrives, in order, as with node:cluster', async (t) => {
  // One after the other: two streams would compete for the cores.
  const native = await run('stream.cjs', { timeout: 60000 });
  const stock = await run('stream.cjs', { impl: 'stock', timeout: 60000 });
  for (const r of [native, stock]) {
    assert.equal(r.code, 0, r.stderr);
    const d = done(r);
    assert.ok(d, r.stdout + r.stderr);
    assert.equal(d.inOrder, true);
    assert.equal(d.received, 3 * 20000);
  }
  t.diagnostic(`3 streams of 20,000: native ${done(native).ms.toFixed(0)} ms, stock ${done(stock).ms.toFixed(0)} ms`);
});

test('the core is one thread, and every thread of the primary and its workers keeps the kernel\'s time slice', () => {
  const out = JSON.parse(execFileSync(process.execPath, [fixture('threads.cjs')], { encoding: 'utf8', timeout: 30000 }));
  const main = out.online.primary[0].slice;
  for (const phase of ['online', 'handedConnections', 'messageAgain']) {
    const primary = out[phase].primary;
    // (A thread's name is cut at 15 characters: 'native-cluster-'.)
    const core = primary.filter((th) => th.comm.startsWith('native-cluster'));
    assert.equal(core.length, 1, JSON.stringify(primary));
    for (const th of primary) assert.equal(th.slice, main, `${phase}: primary thread ${th.comm}`);
  }
  for (const th of out.online.worker) assert.equal(th.slice, main, `worker thread ${th.comm}`);
});
