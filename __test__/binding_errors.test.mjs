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

// The addon's event kinds, as its source names them, are the facade's:
// an event of a kind `onEvents` does not handle would only be a warning
// in production; here it fails.
test('every event kind the addon emits is one the facade handles', async () => {
  const { readFile } = await import('node:fs/promises');
  const root = new URL('..', import.meta.url);
  const rust = await readFile(new URL('src/binding/events.rs', root), 'utf8');
  const js = await readFile(new URL('lib/primary.js', root), 'utf8');
  const emitted = [...rust.matchAll(/(?<!set)\("(\w+)", (?:id|bind)\)/g)].map((m) => m[1]).sort();
  const handled = [...js.matchAll(/case '(\w+)':|ev\.kind === '(\w+)'/g)].map((m) => m[1] || m[2]);
  assert.ok(emitted.length >= 13, emitted.join());
  assert.deepEqual(emitted.filter((k) => !handled.includes(k)), []);
});
