// SCHED_STICKY with an unmodified socket.io app: every worker listens on
// the shared port itself and clients stay on long-polling, so every request
// of a session must reach the worker holding it. Under SCHED_RR (the
// control) sessions break; under SCHED_STICKY none does.
import test from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fixture } from './helpers.mjs';

const require = createRequire(import.meta.url);
const has = (name) => { try { require.resolve(name); return true; } catch { return false; } };
const skip = ['socket.io', 'socket.io-client'].every(has) ? false : 'socket.io not installed';

const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
  s.on('error', reject);
});

async function sessions(policy) {
  const { io } = require('socket.io-client');
  const port = await freePort();
  const app = spawn(process.execPath, [fixture('socketio_policy.cjs')], {
    env: { ...process.env, PORT: String(port), POLICY: policy },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  app.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => app.on('close', (code, signal) => resolve({ code, signal })));
  try {
    await new Promise((resolve, reject) => {
      app.stdout.on('data', (d) => { if (String(d).includes('ready')) resolve(); });
      exited.then(() => reject(new Error(`app exited before listening\n${err}`)));
    });
    // One polling session: the handshake, then five round trips, each a
    // separate HTTP request carrying the session id.
    const session = () => new Promise((resolve) => {
      const socket = io(`http://127.0.0.1:${port}`, { transports: ['polling'], reconnection: false, timeout: 5000 });
      let settled = false;
      const done = (result) => {
        if (settled) return;
        settled = true;
        resolve(result);
        socket.close();
      };
      socket.on('connect_error', (e) => done({ error: e.message }));
      socket.on('disconnect', (reason) => done({ error: reason }));
      socket.on('hello', async (pid) => {
        const answers = [];
        for (let i = 0; i < 5; i++) answers.push(await new Promise((r) => socket.emit('whoami', r)));
        done({ hello: pid, answers });
      });
    });
    return await Promise.all(Array.from({ length: 6 }, session));
  } finally {
    app.kill('SIGTERM');
    assert.deepEqual(await exited, { code: 0, signal: null });
    assert.equal(err, '');
  }
}

test('socket.io long-polling across workers: broken under SCHED_RR, whole under SCHED_STICKY', { skip, timeout: 60000 }, async () => {
  const rr = await sessions('rr');
  assert.ok(rr.some((s) => s.error), `the control: round-robin splits sessions\n${JSON.stringify(rr)}`);
  const sticky = await sessions('sticky');
  for (const s of sticky) {
    assert.equal(s.error, undefined, JSON.stringify(sticky));
    assert.deepEqual(s.answers, Array(5).fill(s.hello));
  }
});
