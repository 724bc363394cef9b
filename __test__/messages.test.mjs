// Messages sent before a worker's code listens are held and delivered in
// order, to ES module and CommonJS workers alike.
import test from 'node:test';
import assert from 'node:assert/strict';
import { run, primaryEvents, workerEvents } from './helpers.mjs';

test('an ESM worker receives every message sent in the fork handler, in order', async () => {
  const r = await run('esm_worker.mjs', { env: { WORKERS: '3' } });
  assert.equal(r.code, 0, r.stderr);
  const got = primaryEvents(r).filter((e) => e[0] === 'got');
  assert.equal(got.length, 3, r.stdout + r.stderr);
  for (const e of got) assert.deepEqual(e[2], { seen: [0, 1, 2] });
});

test('a CommonJS worker listening on cluster.worker gets the same, as with node:cluster', async () => {
  const [native, stock] = await Promise.all([run('cjs_worker.cjs'), run('cjs_worker.cjs', { impl: 'stock' })]);
  assert.equal(native.code, 0, native.stderr);
  const sorted = (r) => primaryEvents(r).map((e) => JSON.stringify(e[2])).sort();
  assert.deepEqual(sorted(native), sorted(stock));
  assert.equal(sorted(native).length, 2);
});

test('the preload leaves the worker environment as the primary set it', async () => {
  const r = await run('worker_env.mjs', { env: { NODE_OPTIONS: '--no-warnings' } });
  const s = await run('worker_env.mjs', { impl: 'stock', env: { NODE_OPTIONS: '--no-warnings' } });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(primaryEvents(r), primaryEvents(s));
});

test('messages sent right before the primary exits are delivered, as with node:cluster', async () => {
  const [native, stock] = await Promise.all([run('exit_send.mjs'), run('exit_send.mjs', { impl: 'stock' })]);
  assert.equal(native.code, 0, native.stderr);
  assert.deepEqual(workerEvents(native), workerEvents(stock));
  assert.deepEqual(workerEvents(native), [['received', 100]]);
});

test('plain messages, messages with a handle, 1 MiB ones and send callbacks keep their order, as with node:cluster', async () => {
  const [native, stock] = await Promise.all([run('interleaved.mjs'), run('interleaved.mjs', { impl: 'stock' })]);
  assert.equal(native.code, 0, native.stderr);
  assert.equal(stock.code, 0, stock.stderr);
  const expected = Array.from({ length: 400 }, (_, i) => [i, i % 10 === 3, i % 50 === 25 ? 1 << 20 : 0]);
  const seen = (r) => primaryEvents(r).find((e) => e[0] === 'seen')?.[1];
  const callbacks = (r) => primaryEvents(r).find((e) => e[0] === 'callbacks')?.[1];
  assert.deepEqual(seen(native), expected);
  assert.deepEqual(seen(stock), expected);
  assert.deepEqual(callbacks(native), Array.from({ length: 58 }, (_, k) => 7 * k));
  assert.deepEqual(callbacks(native), callbacks(stock));
});
