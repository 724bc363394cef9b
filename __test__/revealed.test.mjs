// Behaviours that Node's own cluster test suite revealed, in our own words:
// sockets handed back to the primary and the server waiting for them, Unix
// socket files removed with their server, worker.process as a real
// ChildProcess, extra stdio pipes working both ways.
import test from 'node:test';
import assert from 'node:assert/strict';
import { run, primaryEvents } from './helpers.mjs';

const cases = [
  ['socket-back', {}, [['client got', 'from primary'], ['worker exit', 0]]],
  ['unix-path', { POLICY: 'rr' }, [['exists while listening', true], ['exists after exit', false]]],
  ['unix-path', { POLICY: 'none' }, [['exists while listening', true], ['exists after exit', false]]],
  ['child-process', {}, [['published', true], ['instanceof', true, true], ['close', 0, null, null, false]]],
  ['stdio-duplex', {}, [['echo', 'ping']]],
];

for (const [step, env, expected] of cases) {
  test(`${step} ${JSON.stringify(env)} matches node:cluster`, async () => {
    const e = { STEP: step, ...env };
    const [native, stock] = await Promise.all([run('revealed.mjs', { env: e }), run('revealed.mjs', { impl: 'stock', env: e })]);
    assert.equal(native.code, 0, native.stderr);
    const sorted = (r) => primaryEvents(r).map((x) => JSON.stringify(x)).sort();
    assert.deepEqual(sorted(native), sorted(stock));
    assert.deepEqual(sorted(native), expected.map((x) => JSON.stringify(x)).sort());
  });
}
