// Bad input from a worker is reported on that worker and harms nothing else;
// workers coming and going leak no descriptors.
import test from 'node:test';
import assert from 'node:assert/strict';
import { run, primaryEvents } from './helpers.mjs';

test('a malformed frame and an unknown act emit error on that worker only', async () => {
  const r = await run('bad_worker.mjs');
  assert.equal(r.code, 0, r.stderr);
  const ev = primaryEvents(r);
  const errors = ev.filter((e) => e[0].endsWith('error'));
  assert.deepEqual(errors, [
    ['bad error', 'ERR_CLUSTER_BAD_MESSAGE'],
    ['bad error', 'ERR_CLUSTER_UNKNOWN_ACT'],
  ]);
  // Only the bad line was lost: the messages around it came, in order, and
  // every worker was still heard from afterwards, and exited cleanly.
  const from = (id) => ev.filter((e) => e[0] === 'message' && e[1] === id).map((e) => e[2]);
  assert.deepEqual(from(1), ['before', 'between', 'after']);
  assert.deepEqual(from(2), ['after']);
  assert.deepEqual(from(3), ['before', 'between', 'after']);
  const bad = ev.filter((e) => (e[0] === 'message' && e[1] === 1) || e[0] === 'bad error').map((e) => e[2] ?? e[1]);
  assert.deepEqual(bad.slice(0, 3), ['before', 'ERR_CLUSTER_BAD_MESSAGE', 'between']);
  assert.deepEqual(ev.filter((e) => e[0] === 'exit').map((e) => e[2]), [0, 0, 0]);
  // The worker without an 'error' listener was reported as a warning.
  assert.match(r.stderr, /ERR_CLUSTER_BAD_MESSAGE|cannot be decoded|malformed/);
  assert.ok(ev.some((e) => e[0] === 'still alive'));
});

test('forking, serving and disconnecting workers leaks no file descriptors', async () => {
  const r = await run('fd_leak.mjs');
  assert.equal(r.code, 0, r.stderr);
  const ev = primaryEvents(r);
  const counts = ev.filter((e) => e[0] === 'fds').map((e) => e[1]);
  assert.equal(counts.length, 3, r.stdout);
  // The first round opens the I/O thread's own descriptors; later rounds
  // must come back to the same count.
  assert.equal(counts[2], counts[1], `fd counts per round: ${counts}`);
});
