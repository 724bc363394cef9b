// Argument errors carry Node's codes and messages.
import test from 'node:test';
import assert from 'node:assert/strict';
import { run, primaryEvents } from './helpers.mjs';

test('wrong arguments fail exactly as with node:cluster', async () => {
  const [native, stock] = await Promise.all([run('errors.mjs'), run('errors.mjs', { impl: 'stock' })]);
  assert.deepEqual(primaryEvents(native), primaryEvents(stock));
  assert.ok(primaryEvents(native).length >= 12, native.stdout + native.stderr);
});
