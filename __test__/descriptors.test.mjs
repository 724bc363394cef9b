// Worker and worker.process have the properties stock node:cluster's have,
// each own or inherited as there, data or accessor, writable, enumerable
// and configurable as there, at fork(), at 'online' and after exit; every
// one assignable in strict mode as there (PM2 assigns `worker.process.pid`
// when it stops a process). Names starting with `_` are each
// implementation's internals and are not compared.
import test from 'node:test';
import assert from 'node:assert/strict';
import { run, primaryEvents } from './helpers.mjs';

const byStep = (r) => Object.fromEntries(primaryEvents(r));
const publicNames = (described) => Object.keys(described).filter((n) => !n.startsWith('_')).sort();

test('Worker and worker.process property descriptors and assignments match node:cluster\'s', { timeout: 60000 }, async () => {
  const [native, stock] = await Promise.all([run('descriptors.mjs'), run('descriptors.mjs', { impl: 'stock' })]);
  assert.equal(stock.code, 0, stock.stderr);
  assert.equal(native.code, 0, native.stderr);
  const ours = byStep(native);
  const theirs = byStep(stock);

  for (const step of ['fork', 'online', 'exit']) {
    for (const obj of ['worker', 'process']) {
      const names = publicNames(theirs[step][obj]);
      // The ones the brief names, so that a change to the fixture cannot
      // quietly compare nothing.
      if (obj === 'worker') for (const n of ['id', 'process', 'state', 'exitedAfterDisconnect', 'send', 'kill']) assert.ok(names.includes(n), n);
      else {
        for (const n of ['pid', 'connected', 'exitCode', 'signalCode', 'killed', 'stdin', 'stdout', 'stderr',
          'stdio', 'spawnfile', 'spawnargs', 'channel', 'send', 'disconnect', 'kill', 'ref', 'unref']) {
          assert.ok(names.includes(n), n);
        }
      }
      for (const name of names) {
        let expected = theirs[step][obj][name];
        // Between fork() and the first read, our pid waits for the I/O
        // thread's fork: an own, enumerable accessor that reads and assigns
        // like the data property it then becomes.
        if (step === 'fork' && obj === 'process' && name === 'pid' && ours[step][obj][name].kind === 'accessor') {
          expected = { own: true, kind: 'accessor', get: true, set: true, enumerable: true, configurable: true };
        }
        assert.deepEqual(ours[step][obj][name], expected, `${obj}.${name} at ${step}`);
      }
    }
  }

  for (const step of ['assign process', 'assign worker']) {
    const names = Object.keys(theirs[step]).sort();
    assert.ok(names.includes(step === 'assign process' ? 'pid' : 'state'));
    for (const name of names) {
      assert.deepEqual(theirs[step][name], { threw: false, readsBack: true }, `stock: ${step} ${name}`);
      assert.deepEqual(ours[step]?.[name], theirs[step][name], `${step.slice(7)}.${name} = value`);
    }
  }

  const assigned = { early: 0, afterOnline: 0, running: 12, afterExit: 12, code: null, signal: 'SIGTERM' };
  assert.deepEqual(theirs['pid assigned'], assigned);
  assert.deepEqual(ours['pid assigned'], assigned);
  const read = { pid: true, descriptor: { own: true, kind: 'data', writable: true, enumerable: true, configurable: true, type: 'number' } };
  assert.deepEqual(theirs['pid read'], read);
  assert.deepEqual(ours['pid read'], read);
});
