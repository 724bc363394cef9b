// Port sharing under Node's two policies and our two, with real HTTP clients.
import test from 'node:test';
import assert from 'node:assert/strict';
import { run, primaryEvents } from './helpers.mjs';

function served(r) {
  const ev = primaryEvents(r).find((e) => e[0] === 'served');
  assert.ok(ev, `no 'served' event\n${r.stdout}\n${r.stderr}`);
  return ev[1];
}

for (const policy of ['rr', 'none']) {
  test(`SCHED_${policy.toUpperCase()}: two workers share one port, every request answered`, async () => {
    const r = await run('serve.mjs', { env: { POLICY: policy, REQUESTS: '40' } });
    assert.equal(r.code, 0, r.stderr);
    const s = served(r);
    assert.equal(s.failures, 0);
    const total = Object.values(s.counts).reduce((a, b) => a + b, 0);
    assert.equal(total, 40);
    for (const body of Object.keys(s.counts)) assert.match(body, /^worker [12]$/);
    if (policy === 'rr') {
      // Round-robin hands connections to both workers.
      assert.equal(Object.keys(s.counts).length, 2, JSON.stringify(s.counts));
    }
    // One listening socket: the primary's (RR) or the one shared (NONE).
    assert.equal(s.listeners, 1);
    assert.ok(primaryEvents(r).some((e) => e[0] === 'all disconnected'));
  });
}

test('SCHED_REUSEPORT: each worker listens on a socket of its own, the kernel spreads requests', async () => {
  const r = await run('serve.mjs', { env: { POLICY: 'reuseport', WORKERS: '3', REQUESTS: '60' } });
  assert.equal(r.code, 0, r.stderr);
  const s = served(r);
  assert.equal(s.failures, 0);
  assert.equal(s.listeners, 3);
  assert.equal(Object.values(s.counts).reduce((a, b) => a + b, 0), 60);
  assert.ok(Object.keys(s.counts).length >= 2, JSON.stringify(s.counts));
  assert.ok(primaryEvents(r).some((e) => e[0] === 'all disconnected'));
});

test('SCHED_REUSEPORT: a dead worker\'s socket stays in the group, served by the primary for the others', async () => {
  const r = await run('serve.mjs', { env: { POLICY: 'reuseport', WORKERS: '2', REQUESTS: '40', KILL_ONE: '1' } });
  assert.equal(r.code, 0, r.stderr);
  const s = served(r);
  // Worker 2's socket and the vacated one, which the primary accepts from
  // and hands to worker 2: no connection is lost or left waiting.
  assert.equal(s.listeners, 2);
  assert.equal(s.failures, 0);
  assert.deepEqual(s.counts, { 'worker 2': 40 });
});

test('SCHED_STICKY: every connection from one client address reaches the same worker', async () => {
  const r = await run('serve.mjs', { env: { POLICY: 'sticky', WORKERS: '3', REQUESTS: '96', SOURCES: '16' } });
  assert.equal(r.code, 0, r.stderr);
  const s = served(r);
  assert.equal(s.failures, 0);
  assert.equal(s.listeners, 1);
  assert.equal(Object.keys(s.bySource).length, 16);
  for (const [source, seen] of Object.entries(s.bySource)) {
    assert.deepEqual(Object.values(seen), [6], `${source} went to ${JSON.stringify(seen)}`);
  }
  // Different clients are spread over the workers.
  assert.equal(Object.keys(s.counts).length, 3, JSON.stringify(s.counts));
});

test('SCHED_STICKY: when a worker dies only its clients move', async () => {
  const env = { POLICY: 'sticky', WORKERS: '3', REQUESTS: '48', SOURCES: '8' };
  const [all, oneDead] = await Promise.all([
    run('serve.mjs', { env }),
    run('serve.mjs', { env: { ...env, KILL_ONE: '1' } }),
  ]);
  const owner = (r) => Object.fromEntries(Object.entries(served(r).bySource).map(([src, seen]) => {
    assert.equal(Object.keys(seen).length, 1, `${src}: ${JSON.stringify(seen)}`);
    return [src, Object.keys(seen)[0]];
  }));
  const before = owner(all);
  const after = owner(oneDead);
  assert.equal(served(oneDead).failures, 0);
  let moved = 0;
  for (const [src, w] of Object.entries(before)) {
    if (w === 'worker 1') {
      assert.notEqual(after[src], 'worker 1');
      moved++;
    } else {
      assert.equal(after[src], w, `${src} moved from ${w} to ${after[src]}`);
    }
  }
  // The dead worker had clients of its own, so something really moved.
  assert.ok(moved > 0, JSON.stringify(before));
});

test('SCHED_STICKY keeps serving while the primary JavaScript is blocked', async () => {
  const r = await run('serve.mjs', { env: { POLICY: 'sticky', BLOCK: '1', REQUESTS: '20' } });
  assert.equal(r.code, 0, r.stderr);
  const s = served(r);
  assert.equal(s.failures, 0);
  assert.ok(s.maxMs < 1000, `slowest request took ${s.maxMs} ms`);
});

test('SCHED_RR keeps serving while the primary JavaScript is blocked', async () => {
  const r = await run('serve.mjs', { env: { POLICY: 'rr', BLOCK: '1', REQUESTS: '20' } });
  assert.equal(r.code, 0, r.stderr);
  const s = served(r);
  assert.equal(s.failures, 0);
  assert.equal(Object.values(s.counts).reduce((a, b) => a + b, 0), 20);
  // Served during the 1.5 s block, not after it.
  assert.ok(s.maxMs < 1000, `slowest request took ${s.maxMs} ms`);
});

test('NODE_CLUSTER_SCHED_POLICY selects the policy as in node:cluster', async () => {
  const probe = async (impl, value) => {
    const r = await run('policy.mjs', { impl, env: { NODE_CLUSTER_SCHED_POLICY: value } });
    return primaryEvents(r)[0];
  };
  for (const value of ['rr', 'none', '']) {
    assert.deepEqual((await probe('native', value)).slice(0, 3), await probe('stock', value));
  }
  // Ours: the policy values and their names.
  assert.deepEqual(await probe('native', 'reuseport'), [3, 2, 1, 3, 4]);
  assert.deepEqual(await probe('native', 'sticky'), [4, 2, 1, 3, 4]);
});
