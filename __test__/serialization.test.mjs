// 'advanced' serialization carries what V8's serializer carries, both ways.
import test from 'node:test';
import assert from 'node:assert/strict';
import { run, primaryEvents, workerEvents } from './helpers.mjs';

test("serialization: 'advanced' round-trips Buffers, typed arrays, Maps, Sets, Dates, BigInts", async () => {
  const [native, stock] = await Promise.all([run('advanced.mjs'), run('advanced.mjs', { impl: 'stock' })]);
  assert.equal(native.code, 0, native.stderr);
  assert.deepEqual(primaryEvents(native), primaryEvents(stock));
  assert.deepEqual(workerEvents(native), workerEvents(stock));
  const [[, fromWorker]] = primaryEvents(native);
  assert.equal(fromWorker.buf, 'héllo');
  assert.deepEqual(fromWorker.map, [['a', 1], ['b', { c: [1, 2] }]]);
  assert.equal(fromWorker.date, '1970-01-02T00:00:00.000Z');
});

test("serialization: 'advanced' carries a handle with a message of Dates and Maps", async () => {
  const [native, stock] = await Promise.all([run('advanced_handle.mjs'), run('advanced_handle.mjs', { impl: 'stock' })]);
  assert.equal(native.code, 0, native.stderr);
  assert.deepEqual(primaryEvents(native), primaryEvents(stock));
  assert.deepEqual(primaryEvents(native), [[0, [[1, 2]], true]]);
});
