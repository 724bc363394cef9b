// Third-party cluster libraries, unmodified, on native-cluster through
// `--require native-cluster/register`: throng (fork, revive, signal
// shutdown) and @socket.io/sticky (the primary routes each HTTP request by
// session id and passes the socket to the worker; socket.io's long-polling
// and its upgrade to WebSocket only work when every request of a session
// reaches the same worker).
import test from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { addonFileRe } from './helpers.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const appDir = path.join(here, 'fixtures', 'register');
const require = createRequire(import.meta.url);

const has = (name) => { try { require.resolve(name); return true; } catch { return false; } };
const missing = (...names) => {
  const absent = names.filter((n) => !has(n));
  return absent.length ? `not installed (npm install): ${absent.join(', ')}` : false;
};

const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  }).on('error', reject);
});

const getJSON = (port) => new Promise((resolve, reject) => {
  http.get({ host: '127.0.0.1', port, agent: false }, (res) => {
    let body = '';
    res.on('data', (d) => { body += d; });
    res.on('end', () => resolve(JSON.parse(body)));
  }).on('error', reject);
});

const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const addonLoaded = (pid) => addonFileRe.test(readFileSync(`/proc/${pid}/maps`, 'utf8'));

function startApp(file, env) {
  const child = spawn(process.execPath, ['--require', 'native-cluster/register', file], {
    cwd: appDir,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const r = { child, out: '', err: '', waiters: [] };
  const check = () => {
    r.waiters = r.waiters.filter((w) => {
      if ((r.out.match(w.re) || []).length < w.count) return true;
      clearTimeout(w.timer);
      w.resolve();
      return false;
    });
  };
  child.stdout.on('data', (d) => { r.out += d; check(); });
  child.stderr.on('data', (d) => { r.err += d; });
  r.exit = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  r.waitFor = (re, count = 1, timeout = 10000) => new Promise((resolve, reject) => {
    const w = { re: new RegExp(re.source, 'g'), count, resolve };
    w.timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} x${count}\n${r.out}\n${r.err}`)), timeout);
    r.waiters.push(w);
    check();
  });
  r.stop = async (pids) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await r.exit;
    }
    const deadline = Date.now() + 5000;
    while (pids().some(alive) && Date.now() < deadline) await sleep(50);
  };
  return r;
}

test('throng: count 2, a killed worker is revived, SIGTERM runs the workers\' cleanup and the master\'s', { skip: missing('throng'), timeout: 20000 }, async () => {
  const port = await freePort();
  const r = startApp('throng-app.js', { PORT: port });
  const pids = () => [...r.out.matchAll(/\(pid (\d+)\)/g)].map((m) => Number(m[1]));
  try {
    await r.waitFor(/Started worker \d+/, 2);
    assert.match(r.out, /^Started master$/m);
    // throng's require('cluster') got native-cluster: its primary has the addon.
    assert.ok(addonLoaded(r.child.pid), 'addon loaded in the primary');
    const ids = new Set();
    for (let i = 0; i < 6; i++) ids.add((await getJSON(port)).id);
    assert.deepEqual([...ids].sort(), [1, 2]);

    const first = Number(r.out.match(/Started worker 1 \(pid (\d+)\)/)[1]);
    process.kill(first, 'SIGKILL');
    await r.waitFor(/Started worker 3 \(pid \d+\)/);
    const after = new Set();
    for (let i = 0; i < 6; i++) after.add((await getJSON(port)).id);
    assert.deepEqual([...after].sort(), [2, 3]);

    r.child.kill('SIGTERM');
    assert.deepEqual(await r.exit, { code: 0, signal: null });
    assert.match(r.out, /^Worker 2 cleanup\.$/m);
    assert.match(r.out, /^Worker 3 cleanup\.$/m);
    assert.match(r.out, /^Master cleanup\.$/m);
    assert.equal(r.err, '');
    assert.deepEqual(pids().filter(alive), []);
  } finally {
    await r.stop(pids);
  }
});

for (const lb of ['least-connection', 'round-robin']) {
  test(`@socket.io/sticky (${lb}): polling sessions and WebSocket upgrades stick to one worker`, { skip: missing('@socket.io/sticky', 'socket.io', 'socket.io-client'), timeout: 60000 }, async () => {
    // sticky binds a session to its worker when the worker's message reaches
    // the primary, and the client's next request races that message: the
    // worker writes the handshake response before it sends the message, so
    // on a loaded machine a client can win the race against any cluster,
    // stock Node's included (bench/sticky_race.mjs measures it). A fresh
    // app gets up to three tries; any other failure fails them all.
    for (let attempt = 1; ; attempt++) {
      try {
        await stickyScenario(lb);
        return;
      } catch (err) {
        if (attempt === 3 || !/xhr (poll|post) error/.test(String(err && err.message))) throw err;
      }
    }
  });
}

async function stickyScenario(lb) {
  {
    const { io } = await import('socket.io-client');
    const port = await freePort();
    const r = startApp('sticky-app.js', { PORT: port, LB: lb });
    const pids = () => [...r.out.matchAll(/Worker (\d+) started/g)].map((m) => Number(m[1]));
    const sockets = [];
    try {
      await r.waitFor(/Worker \d+ started/, 2);
      assert.ok(addonLoaded(r.child.pid), 'addon loaded in the primary');

      // Some clients upgrade to WebSocket, some stay on long-polling (every
      // message a separate HTTP request carrying the session id).
      const client = (transports) => new Promise((resolve, reject) => {
        const socket = io(`http://127.0.0.1:${port}`, { transports, reconnection: false, timeout: 5000 });
        sockets.push(socket);
        const seen = { transports: [], hello: undefined, answers: [] };
        socket.io.on('open', () => {
          const engine = socket.io.engine;
          seen.transports.push(engine.transport.name);
          engine.on('upgrade', (t) => { seen.transports.push(t.name); maybeAsk(); });
        });
        socket.on('connect_error', reject);
        socket.on('hello', (pid) => { seen.hello = pid; maybeAsk(); });
        let asked = false;
        function maybeAsk() {
          const wantsUpgrade = transports.includes('websocket');
          if (asked || seen.hello === undefined || (wantsUpgrade && seen.transports.length < 2)) return;
          asked = true;
          (async () => {
            for (let i = 0; i < 3; i++) {
              seen.answers.push(await new Promise((res) => socket.emit('whoami', (pid, t) => res([pid, t]))));
            }
            resolve(seen);
          })().catch(reject);
        }
      });
      const kinds = [
        ['polling', 'websocket'], ['polling', 'websocket'], ['polling', 'websocket'],
        ['polling'], ['polling'], ['polling'],
      ];
      // One client at a time: sticky binds a session to its worker when the
      // worker's 'sticky:connection' message reaches the primary, and a
      // client's next request races that message (least-connection also
      // counts a session only then, so concurrent handshakes all go to one
      // worker, stock Node too). Under CPU load concurrent clients lose that
      // race now and then (see above).
      const results = [];
      for (const kind of kinds) results.push(await client(kind));
      for (const [i, seen] of results.entries()) {
        const upgraded = i < 3;
        assert.deepEqual(seen.transports, upgraded ? ['polling', 'websocket'] : ['polling'], `client ${i}`);
        for (const [pid, transport] of seen.answers) {
          assert.equal(pid, seen.hello, `client ${i}: the same worker answers every request`);
          assert.equal(transport, upgraded ? 'websocket' : 'polling');
        }
        assert.ok(pids().includes(seen.hello));
      }
      assert.equal(new Set(results.map((s) => s.hello)).size, 2, 'sessions spread over both workers');
      assert.doesNotMatch(r.out, /died/);
      assert.equal(r.err, '');
    } finally {
      for (const s of sockets) s.close();
      await r.stop(pids);
    }
  }
}
