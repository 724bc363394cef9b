// How soon a worker's message reaches the primary's JavaScript. The
// express wake-up: a worker's write wakes the primary's JavaScript thread
// itself, which takes the I/O thread's batch without the thread-safe
// function's second wake-up. Observable results must be node:cluster's:
// every message, in order, and a listener's exception is an uncaught
// exception that stops nothing. And the I/O thread's short time slice
// while worker messages wake JavaScript, which lets it run at once when
// woken on a busy core.
import test from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { run, primaryEvents, fixture } from './helpers.mjs';

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

test('a worker that streams messages unasked stops waking JavaScript at each write; every message arrives, in order', async () => {
  const r = await run('stream.cjs');
  assert.equal(r.code, 0, r.stderr);
  const d = primaryEvents(r).find((e) => e[0] === 'done')?.[1];
  assert.ok(d, r.stdout + r.stderr);
  assert.equal(d.inOrder, true);
  assert.equal(d.received, 3 * 20000);
  // Each 50 ms window (QUIET_FOR) of a stream lets at most 9 reads
  // (STREAMING_READS + 1) take the express path before the worker is quiet
  // again. Waking JavaScript at every write, as before, took hundreds to
  // thousands a stream.
  const bound = (Math.ceil(d.ms / 50) + d.streams) * 9;
  assert.ok(d.woken <= bound, `express batches: ${d.woken} in ${d.ms.toFixed(0)} ms (at most ${bound})`);
});

test('the I/O thread asks for the shortest time slice while worker messages wake JavaScript, the default while workers are handed connections; workers run with the default', async (t) => {
  const [major, minor] = os.release().split('.').map(Number);
  if (major < 6 || (major === 6 && minor < 12)) {
    t.skip(`Linux ${os.release()} has no custom time slices (6.12 and later)`);
    return;
  }
  const out = JSON.parse(execFileSync(process.execPath, [fixture('time_slice.cjs')], { encoding: 'utf8', timeout: 30000 }));
  const io = (phase) => {
    const threads = out[phase].primary.filter((th) => th.comm.startsWith('native-cluster'));
    assert.equal(threads.length, 1, JSON.stringify(out[phase].primary));
    return threads[0].slice;
  };
  // The JavaScript thread is the user's: left as it was.
  const main = out.online.primary[0].slice;
  assert.notEqual(main, 100_000);
  assert.equal(io('online'), 100_000);
  assert.equal(io('handedConnections'), main);
  assert.equal(io('messageAgain'), 100_000);
  for (const th of out.online.worker) assert.equal(th.slice, main, `worker thread ${th.comm}`);
});
