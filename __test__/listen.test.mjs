// Every listen shape a worker can ask for gives the same result as with
// node:cluster, under both policies: addresses, dual stack, IPv6-only, Unix
// paths, UDP, and bind errors with Node's codes and messages.
import test from 'node:test';
import assert from 'node:assert/strict';
import { run, primaryEvents } from './helpers.mjs';

for (const policy of ['rr', 'none']) {
  test(`listen results match node:cluster (${policy})`, async () => {
    const env = { POLICY: policy };
    const [native, stock] = await Promise.all([
      run('listen_matrix.mjs', { env }),
      run('listen_matrix.mjs', { impl: 'stock', env }),
    ]);
    assert.equal(native.code, 0, native.stderr);
    assert.equal(stock.code, 0, stock.stderr);
    const ours = primaryEvents(native);
    assert.deepEqual(ours, primaryEvents(stock));
    // Round-robin TCP servers are listened on by the primary's net module,
    // with the options node:cluster uses (7 TCP cases; none under SCHED_NONE).
    const primaryListens = ours.filter((e) => e[0].primaryListen);
    assert.equal(primaryListens.length, policy === 'rr' ? 7 : 0);
    assert.equal(ours.length, 9 + primaryListens.length);
    assert.deepEqual(ours.find((e) => e[0].name === 'busy port')[0].error.slice(0, 2), ['EADDRINUSE', 'bind']);
  });
}

// Under SCHED_REUSEPORT a worker receives a bound socket and listens on it
// itself, as under SCHED_NONE: every shape and error must be what stock
// node:cluster gives with SCHED_NONE.
test('listen results under SCHED_REUSEPORT match node:cluster SCHED_NONE', async () => {
  const [native, stock] = await Promise.all([
    run('listen_matrix.mjs', { env: { POLICY: 'reuseport' } }),
    run('listen_matrix.mjs', { impl: 'stock', env: { POLICY: 'none' } }),
  ]);
  assert.equal(native.code, 0, native.stderr);
  assert.equal(stock.code, 0, stock.stderr);
  assert.deepEqual(primaryEvents(native), primaryEvents(stock));
});
