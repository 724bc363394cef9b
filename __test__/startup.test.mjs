// What requiring the package costs at start-up: a primary loads only the
// files its require needs (no child_process, net, dgram, v8 or os, none of
// the supervisor) until it forks; a worker loads none of the primary side.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fixture } from './helpers.mjs';

test('require in a primary and in a worker loads only what each side uses; the first fork loads the rest', () => {
  const out = JSON.parse(execFileSync(process.execPath, [fixture('startup/loaded.cjs')], { encoding: 'utf8', timeout: 30000 }));
  assert.deepEqual(out.primary.files, ['index.js', 'lib/native.js', 'lib/policies.js', 'lib/primary.js', 'lib/worker.js']);
  for (const heavy of ['child_process', 'net', 'dgram', 'v8', 'os', 'cluster']) {
    assert.ok(!out.primary.builtins.includes(heavy), `require loaded ${heavy}: ${out.primary.builtins}`);
  }
  // worker.process is still a ChildProcess, once forked.
  assert.ok(out.fork.builtins.includes('child_process'), out.fork.builtins);
  assert.ok(out.fork.files.includes('lib/worker_process.js'), out.fork.files);
  assert.equal(out.fork.childProcess, true);
  for (const unused of ['lib/reload.js', 'lib/stats.js', 'lib/watchdog.js', 'lib/handles.js', 'lib/errors.js']) {
    assert.ok(!out.fork.files.includes(unused), `fork loaded ${unused}`);
  }
  assert.ok(!out.fork.builtins.includes('v8'), 'json serialization loaded v8');
  // The worker: the entry alone, nothing of the primary; the policy
  // constants it names without loading lib/policies.js are the primary's.
  assert.deepEqual(out.worker.files, ['index.js']);
  assert.deepEqual(out.worker.constants, out.constants);
  assert.deepEqual(out.constants, [3, 4]);
});
