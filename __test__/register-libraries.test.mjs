// Third-party cluster libraries, unmodified, on native-cluster through
// `--require native-cluster/register`: throng (fork, revive, signal
// shutdown), @socket.io/sticky (the primary routes each HTTP request by
// session id and passes the socket to the worker; socket.io's long-polling
// and its upgrade to WebSocket only work when every request of a session
// reaches the same worker) and PM2's cluster mode (its process manager is
// the primary: start, reload, restart, stop).
import test from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
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

// PM2 in cluster mode, its process manager (God) in pm2-runtime's own
// process with native-cluster registered through NODE_OPTIONS, as a
// container would run it. PM2 writes `worker.process.pid = 0` when it stops
// an instance, in strict code. Offline: no version check, no first-run ping,
// no PM2 Plus link; host metrics off (they only add load).
test('PM2 cluster mode (pm2-runtime, 2 instances): serve, reload, restart, stop, exit 0, nothing left', { skip: missing('pm2'), timeout: 180000 }, async () => {
  const pm2Bin = path.join(path.dirname(require.resolve('pm2/package.json')), 'bin');
  const home = mkdtempSync(path.join(os.tmpdir(), 'native-cluster-pm2-'));
  writeFileSync(path.join(home, 'touch'), String(Date.now()));
  writeFileSync(path.join(home, 'module_conf.json'), JSON.stringify({ pm2: { sysmonit: 'false' } }));
  const port = await freePort();
  const env = { ...process.env, PM2_HOME: home, PORT: String(port), PM2_DISABLE_VERSION_CHECK: 'true' };
  const runtime = spawn(process.execPath, [path.join(pm2Bin, 'pm2-runtime'), 'start', 'pm2-app.js',
    '--name', 'web', '-i', '2', '--no-auto-exit'], {
    cwd: appDir,
    env: {
      ...env,
      NODE_OPTIONS: [process.env.NODE_OPTIONS, '--require native-cluster/register'].filter(Boolean).join(' '),
      NATIVE_CLUSTER_REGISTER_DEBUG: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  runtime.stdout.on('data', (d) => { out += d; });
  runtime.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => runtime.on('exit', (code, signal) => resolve({ code, signal })));
  const died = exited.then((e) => { throw new Error(`pm2-runtime exited: ${JSON.stringify(e)}\n${out}\n${err}`); });
  died.catch(() => {});

  // A pm2 command against the runtime's PM2_HOME; fails at once if the
  // runtime dies meanwhile.
  const commands = new Set();
  const pm2 = (...args) => Promise.race([died, new Promise((resolve) => {
    const c = spawn(process.execPath, [path.join(pm2Bin, 'pm2'), ...args], { cwd: appDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    commands.add(c);
    c.on('exit', () => commands.delete(c));
    let text = '';
    c.stdout.on('data', (d) => { text += d; });
    c.stderr.on('data', (d) => { text += d; });
    const timer = setTimeout(() => c.kill('SIGKILL'), 60000);
    c.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, text }); });
  })]);

  const seen = new Set();
  const ask = () => new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(JSON.parse(body).pid));
    }).on('error', (e) => resolve(e.code));
  });
  // New connections until two instances have answered; every answer from
  // a worker, none from `gone`.
  const twoServing = async (gone = new Set()) => {
    const pids = new Set();
    const deadline = Date.now() + 30000;
    while (pids.size < 2) {
      assert.ok(Date.now() < deadline, `two instances serving (got ${[...pids]})\n${out}\n${err}`);
      const pid = await Promise.race([died, ask()]);
      if (typeof pid === 'number') {
        assert.ok(!gone.has(pid), `answered by ${pid}, an instance that was replaced`);
        pids.add(pid);
        seen.add(pid);
      } else {
        await sleep(100);
      }
    }
    return pids;
  };

  try {
    const first = await twoServing();
    // PM2's process manager got native-cluster: cluster was redirected in
    // God.js, and the addon is loaded in that process.
    assert.match(err, /require\("cluster"\) from \S*pm2[/\\]lib[/\\]God\.js/);
    assert.ok(addonLoaded(runtime.pid), 'addon loaded in the pm2-runtime process');

    const reload = await pm2('reload', 'web');
    assert.equal(reload.code, 0, reload.text);
    const reloaded = await twoServing(first);

    const restart = await pm2('restart', 'web');
    assert.equal(restart.code, 0, restart.text);
    await twoServing(new Set([...first, ...reloaded]));

    const stop = await pm2('stop', 'web');
    assert.equal(stop.code, 0, stop.text);
    const deadline = Date.now() + 10000;
    while (typeof await ask() === 'number') {
      assert.ok(Date.now() < deadline, 'no answer once stopped');
      await sleep(100);
    }

    runtime.kill('SIGTERM');
    assert.deepEqual(await exited, { code: 0, signal: null }, `${out}\n${err}`);
    assert.doesNotMatch(err, /TypeError|Cannot set property/);
    const left = Date.now() + 10000;
    while ((pm2HomeProcesses(home).length > 0 || [...seen].some(alive)) && Date.now() < left) await sleep(100);
    assert.deepEqual(pm2HomeProcesses(home), [], 'no process of this PM2_HOME left');
    assert.deepEqual([...seen].filter(alive), [], 'no instance left');
  } finally {
    if (runtime.exitCode === null && runtime.signalCode === null) {
      runtime.kill('SIGKILL');
      await exited;
    }
    for (const c of commands) c.kill('SIGKILL');
    // A pm2 command that found no runtime starts a daemon of its own.
    for (const pid of [...pm2HomeProcesses(home), ...[...seen].filter(alive)]) {
      try { process.kill(pid, 'SIGKILL'); } catch {}
    }
    rmSync(home, { recursive: true, force: true });
  }
});

// Live processes whose environment names this PM2_HOME: the runtime, its
// instances, and any daemon a pm2 command started.
function pm2HomeProcesses(home) {
  const entry = `PM2_HOME=${home}\0`;
  const pids = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/environ`, 'latin1').includes(entry)) pids.push(Number(name));
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return pids;
}
