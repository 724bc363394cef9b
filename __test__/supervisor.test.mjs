// The supervisor in the library, with real processes and real HTTP clients
// on 127.0.0.1: cluster.reload() under load for every policy, a failed
// reload, waitReady, the heartbeat watchdog against stock, NODE_APP_INSTANCE
// slots, and the options' argument checks. Fixtures:
// __test__/fixtures/supervisor/.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { run, primaryEvents } from './helpers.mjs';

const require = createRequire(import.meta.url);

async function result(name, opts = {}) {
  const r = await run(`supervisor/${name}`, { timeout: 60000, ...opts });
  const res = primaryEvents(r).find((e) => e[0] === 'result');
  assert.ok(res, `${name} logged no result\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return res[1];
}

for (const policy of ['rr', 'none', 'reuseport', 'sticky']) {
  test(`reload() under continuous load (${policy}): 0 failed requests, every pid replaced`, async (t) => {
    const res = await result('reload.mjs', { env: { POLICY: policy } });
    const info = JSON.stringify({ ...res, load: { ...res.load, failed: res.load.failed.slice(0, 5) } });
    t.diagnostic(`${policy}: reload took ${res.result.ms} ms; ${res.load.ok} requests ok during the run`);
    assert.equal(res.load.failed.length, 0, info);
    assert.ok(res.load.ok > 50, info);
    assert.equal(res.result.replaced.length, 3, info);
    assert.deepEqual(res.result.replaced.map((r) => r.oldPid).sort(), [...res.before].sort(), info);
    assert.deepEqual(res.result.replaced.map((r) => r.newPid).sort(), [...res.after].sort(), info);
    for (const pid of res.before) assert.ok(!res.after.includes(pid), info);
    assert.ok(res.result.ms > 0, info);
  });
}

test('reload() whose replacement dies at start rejects and leaves the old workers serving', async () => {
  const res = await result('reload_fail.mjs');
  assert.equal(res.error?.code, 'ERR_CLUSTER_WORKER_EXITED', JSON.stringify(res));
  assert.deepEqual(res.error.replaced, []);
  assert.deepEqual(res.alive, [true, true]);
  assert.deepEqual(new Set(res.bodies), new Set(res.ids.map((id) => `worker ${id}`)));
});

test('waitReady: a worker listening at once is ready only when it says so, and gets no request before', async () => {
  const res = await result('wait_ready.mjs');
  const at = (kind, id) => res.events.find((e) => e[0] === kind && e[1] === id)?.[2];
  const listened = at('listening', res.second);
  const ready = at('ready', res.second);
  assert.ok(listened && ready, JSON.stringify(res.events));
  assert.ok(ready - listened >= 900, `ready ${ready - listened} ms after listening`);
  assert.deepEqual(res.early, []);
  assert.ok(res.servedBySecond > 0, 'it serves once ready');
  assert.deepEqual(res.errors, []);
});

test('watchdog: a worker blocked 5 s is unresponsive within 1 s; only what it already held waits', async (t) => {
  const [native, stock] = await Promise.all([
    result('hung.mjs', { env: { HEARTBEAT: '500' } }),
    result('hung.mjs', { impl: 'stock' }),
  ]);
  const unresponsive = native.events.find((e) => e[0] === 'unresponsive');
  t.diagnostic(`unresponsive after ${unresponsive?.[2]} ms; requests over 1.5 s: native ${native.slow.length} of ${native.total}, stock ${stock.slow.length} of ${stock.total}`);
  assert.equal(unresponsive?.[1], native.blocked, JSON.stringify(native.events));
  assert.ok(unresponsive[2] < 1000, JSON.stringify(native.events));
  const responsive = native.events.find((e) => e[0] === 'responsive');
  assert.ok(responsive && responsive[2] >= 4500, JSON.stringify(native.events));
  // The slow ones went to the blocked worker before it was declared
  // unresponsive (round-robin had handed it one and waited for its answer).
  for (const q of native.slow) {
    assert.equal(q.body, `worker ${native.blocked}`, JSON.stringify(q));
    assert.ok(q.started < unresponsive[2], JSON.stringify(q));
  }
  assert.ok(native.slow.length <= stock.slow.length + 1, JSON.stringify({ native: native.slow, stock: stock.slow }));
  assert.equal(native.errors, 0);
});

test('NODE_APP_INSTANCE: slots 0..N-1, a re-fork takes the free slot, a reload keeps them', async () => {
  const res = await result('instances.mjs');
  assert.deepEqual(res, { initial: ['0', '1', '2'], refork: '1', reloaded: ['0', '1', '2'] });
});

test('argument checks: setupPrimary waitReady/heartbeatTimeout, reload options', async () => {
  const cluster = require('../');
  assert.throws(() => cluster.setupPrimary({ waitReady: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => cluster.setupPrimary({ heartbeatTimeout: '500' }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => cluster.setupPrimary({ heartbeatTimeout: 0 }), {
    code: 'ERR_OUT_OF_RANGE',
    message: 'The value of "options.heartbeatTimeout" is out of range. It must be an integer >= 1 and <= 2147483647. Received 0',
  });
  await assert.rejects(cluster.reload({ concurrency: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(cluster.reload({ readyTimeout: 1.5 }), { code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(cluster.reload(7), { code: 'ERR_INVALID_ARG_TYPE' });
  // Nothing to replace: resolves at once with nothing replaced.
  const r = await cluster.reload();
  assert.deepEqual(r.replaced, []);
});
