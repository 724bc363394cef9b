// Every failure crossing the addon carries a Node-style code, and nothing
// the addon reports is dropped silently.
import test from 'node:test';
import assert from 'node:assert/strict';
import { run } from './helpers.mjs';

test('binding calls throw coded errors; bad internal messages and unknown events are reported', async () => {
  const r = await run('binding_errors.cjs');
  assert.equal(r.code, 0, r.stderr);
  const seen = JSON.parse(r.stdout.trim().split('\n').pop());
  assert.deepEqual(seen, {
    unknownEvent: 'native-cluster: the addon sent an event of unknown kind "noSuchKind"',
    internalError: 'ERR_CLUSTER_BAD_MESSAGE',
    kill: 'ESRCH',
    configure: 'ERR_INVALID_ARG_VALUE',
    spawn: 'ERR_INVALID_ARG_VALUE',
    spawnFailed: { code: 'ENOENT', errno: -2, syscall: `spawn ${process.execPath}` },
  });
});
