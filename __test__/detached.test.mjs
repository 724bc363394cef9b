// setupPrimary({ detached: true }): each worker in a session and process
// group of its own, so a SIGINT to the primary's process group (a
// terminal's Ctrl-C) reaches the primary only, which stops the worker
// gracefully; without it the worker dies of the SIGINT, as under stock.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'detached.cjs');

// Runs the fixture in a process group of its own; SIGINT to the group once
// the worker is online. Resolves with the primary's lines.
function ctrlC(env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fixture], { env: { ...process.env, ...env }, detached: true, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const timer = setTimeout(() => { process.kill(-child.pid, 'SIGKILL'); reject(new Error(`timed out:\n${out}`)); }, 20000);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.split('\n').length === 2) process.kill(-child.pid, 'SIGINT');
    });
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out.trim().split('\n').map((l) => JSON.parse(l)));
    });
  });
}

test('detached: true puts the worker in a session of its own; a SIGINT to the group leaves it to the primary', async () => {
  const [ids, exit] = await ctrlC({ DETACHED: '1' });
  assert.equal(ids.pgrp, ids.worker);
  assert.equal(ids.sid, ids.worker);
  assert.deepEqual(exit, { code: 0, signal: null }, 'disconnected, it exited by itself');
});

for (const impl of ['native', 'stock']) {
  test(`without detached (${impl}), the worker shares the primary's group and dies of the SIGINT`, async () => {
    const [ids, exit] = await ctrlC({ IMPL: impl });
    assert.equal(ids.pgrp, ids.primary);
    assert.deepEqual(exit, { code: null, signal: 'SIGINT' });
  });
}

test('detached must be a boolean', () => {
  const cluster = require('../');
  assert.throws(() => cluster.setupPrimary({ detached: 'yes' }), {
    code: 'ERR_INVALID_ARG_TYPE',
    message: 'The "options.detached" property must be of type boolean. Received type string (\'yes\')',
  });
});
