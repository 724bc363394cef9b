// The life of one worker, event by event, must read the same with
// native-cluster as with stock node:cluster.
import test from 'node:test';
import assert from 'node:assert/strict';
import { run, primaryEvents } from './helpers.mjs';

test('fork, online, listening, messages, disconnect and exit match node:cluster', async () => {
  const [native, stock] = await Promise.all([
    run('lifecycle.mjs', { impl: 'native' }),
    run('lifecycle.mjs', { impl: 'stock' }),
  ]);
  assert.equal(native.code, 0, native.stderr);
  assert.equal(stock.code, 0, stock.stderr);
  const ours = primaryEvents(native);
  assert.deepEqual(ours, primaryEvents(stock));
  // And the sequence is the one Node documents, not merely equal.
  assert.deepEqual(ours.map((e) => e[0]), [
    'forked', 'cluster setup', 'cluster fork', 'worker online', 'cluster online',
    'worker listening', 'cluster listening', 'cluster message', 'worker message',
    'worker disconnect', 'cluster disconnect', 'worker exit', 'cluster exit', 'primary exit',
  ]);
});
