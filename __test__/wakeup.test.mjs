// The express wake-up: a worker's write wakes the primary's JavaScript
// thread itself, which takes the I/O thread's batch without the
// thread-safe function's second wake-up. Observable results must be
// node:cluster's: every message, in order, and a listener's exception is
// an uncaught exception that stops nothing.
import test from 'node:test';
import assert from 'node:assert/strict';
import { run, primaryEvents } from './helpers.mjs';

test('ping-pong: every reply in order, most taken on the express wake-up; a throwing listener is an uncaught exception, as with node:cluster', async () => {
  // One after the other: the express path needs the primary's loop to be
  // idle when a reply arrives, which two primaries sharing the machine's
  // cores make rarer.
  const native = await run('wakeup.mjs');
  const stock = await run('wakeup.mjs', { impl: 'stock' });
  assert.equal(native.code, 0, native.stderr);
  assert.equal(stock.code, 0, stock.stderr);
  const done = (r) => primaryEvents(r).find((e) => e[0] === 'done')?.[1];
  const n = done(native);
  const s = done(stock);
  assert.ok(n, native.stdout + native.stderr);
  assert.equal(n.inOrder, true);
  assert.deepEqual(n.tail, ['first', 'last']);
  assert.deepEqual(n.uncaught, ['thrown by a message listener']);
  assert.deepEqual({ ...n, woken: null }, s);
  // 500 replies, each one arriving while the primary's loop waits for it:
  // the express path takes batches (typically 50-95% of them on an idle
  // 2-core machine; the bound leaves room for a loaded one).
  assert.ok(n.woken >= 25, `batches taken on the express wake-up: ${n.woken} of about 503`);
});
