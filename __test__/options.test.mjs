// Spawn options and connection limits behave as with node:cluster.
import test from 'node:test';
import assert from 'node:assert/strict';
import { run, primaryEvents } from './helpers.mjs';

for (const step of ['silent', 'stdio', 'cwd', 'prof', 'inspect']) {
  test(`setupPrimary ${step} matches node:cluster`, async () => {
    // One at a time: inspector ports are fixed per process.
    const native = await run('spawn_options.mjs', { env: { STEP: step } });
    const stock = await run('spawn_options.mjs', { impl: 'stock', env: { STEP: step } });
    assert.equal(native.code, 0, native.stderr);
    assert.deepEqual(primaryEvents(native), primaryEvents(stock));
    assert.ok(primaryEvents(native).some((e) => e[0] === 'close'), native.stdout);
  });
}

test('connections a worker refuses at maxConnections go to another worker', async () => {
  const [native, stock] = await Promise.all([run('max_connections.mjs'), run('max_connections.mjs', { impl: 'stock' })]);
  assert.equal(native.code, 0, native.stderr);
  assert.deepEqual(primaryEvents(native), primaryEvents(stock));
  assert.deepEqual(primaryEvents(native), [['counts', { 'worker 1': 1, 'worker 2': 5 }]]);
});
