// Sending net.Socket, net.Server and dgram.Socket handles both ways.
import test from 'node:test';
import assert from 'node:assert/strict';
import { run, primaryEvents } from './helpers.mjs';

test('handles cross the channel both ways as with node:cluster', async () => {
  const [native, stock] = await Promise.all([run('handles.mjs'), run('handles.mjs', { impl: 'stock' })]);
  assert.equal(native.code, 0, native.stderr);
  assert.equal(stock.code, 0, stock.stderr);
  // The two replies race with the handles the worker sends back; compare
  // as sets.
  const sorted = (r) => primaryEvents(r).map((e) => JSON.stringify(e)).sort();
  assert.deepEqual(sorted(native), sorted(stock));
  assert.deepEqual(sorted(native), [
    ['got server', true, 'number'],
    ['got udp', true, 'udp4'],
    ['server answered by', 'worker 1 via server'],
    ['socket answered by', 'worker 1 via socket'],
  ].map((e) => JSON.stringify(e)));
});
