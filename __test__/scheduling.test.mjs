// Port sharing under both policies, with real HTTP clients.
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
    assert.ok(primaryEvents(r).some((e) => e[0] === 'all disconnected'));
  });
}

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
    assert.deepEqual(await probe('native', value), await probe('stock', value));
  }
});
