// @socket.io/sticky's session race on a loaded machine, native-cluster
// against stock node:cluster:
//
//   node bench/sticky_race.mjs [--rounds R] [--runs N]
//
// Each run starts @socket.io/sticky's documented app (the test fixture
// __test__/fixtures/register/sticky-app.js: the primary's HTTP server routes
// each request by its session id, 2 workers run socket.io) while two
// `for(;;)` processes load both cores, and connects 10 socket.io clients at
// once (half long-polling only, half upgrading), each asking its worker 3
// times who it is. A run fails if any client's session breaks: the primary
// routed one of its requests before the worker's message binding the
// session reached the primary's JavaScript ("Session ID unknown").
//
// engine.io writes the handshake response before it announces the session,
// and the worker's `process.send` comes after it: a client can send its
// next request before the worker has sent the session id at all, and then
// no cluster can route it. bench/sticky_trace.cjs stamps each step, so the
// report says how many raced sessions were of that kind, and how long a
// worker's message took to reach the primary's JavaScript.
//
// Native and stock alternate, R rounds of N runs each (default 4 × 15).

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { freePort } from './free_port.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const { io } = require('socket.io-client');
const appDir = path.join(here, '..', '__test__', 'fixtures', 'register');

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  const n = i < 0 ? fallback : Number(process.argv[i + 1]);
  if (!(n >= 1)) {
    console.error('usage: node bench/sticky_race.mjs [--rounds R] [--runs N]');
    process.exit(1);
  }
  return n;
}
const rounds = option('--rounds', 4);
const runs = option('--runs', 15);

function client(port, transports) {
  return new Promise((resolve) => {
    const socket = io(`http://127.0.0.1:${port}`, { transports, reconnection: false, timeout: 5000 });
    const seen = { hello: undefined, answers: [], error: null, finished: false };
    const done = () => {
      socket.close();
      resolve(seen);
    };
    socket.on('connect_error', (e) => {
      seen.error = `${e.message} ${e.context?.responseText ?? ''}`;
      done();
    });
    socket.on('disconnect', (reason) => {
      if (!seen.finished) {
        seen.error = reason;
        done();
      }
    });
    socket.on('hello', async (pid) => {
      seen.hello = pid;
      for (let i = 0; i < 3; i++) seen.answers.push(await new Promise((r) => socket.emit('whoami', (p) => r(p))));
      seen.finished = true;
      done();
    });
  });
}

// One run: whether every session held, and the app's stamps.
async function run(impl) {
  const port = await freePort();
  const trace = ['--require', path.join(here, 'sticky_trace.cjs')];
  const args = impl === 'native' ? ['--require', 'native-cluster/register', ...trace] : trace;
  const app = spawn(process.execPath, [...args, 'sticky-app.js'], {
    cwd: appDir, env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  app.stderr.on('data', (d) => { err += d; });
  await new Promise((resolve, reject) => {
    app.stdout.on('data', (d) => {
      out += d;
      if ((out.match(/Worker \d+ started/g) || []).length === 2) resolve();
    });
    app.on('exit', (code) => reject(new Error(`the app exited (${code}): ${err}`)));
  });
  const kinds = Array.from({ length: 10 }, (_, i) => (i % 2 ? ['polling'] : ['polling', 'websocket']));
  const sessions = await Promise.all(kinds.map((t) => client(port, t)));
  app.kill('SIGKILL');
  await new Promise((r) => app.on('exit', r));
  const failed = sessions.some((s) => s.error || s.answers.length !== 3 || s.answers.some((p) => p !== s.hello));
  return { failed, stamps: parseStamps(err) };
}

function parseStamps(text) {
  return text.split('\n').filter((l) => l.startsWith('@@t ')).map((l) => {
    const [, t, what, sid] = l.split(' ');
    return { t: BigInt(t), what, sid };
  });
}

// Per session: send → bound in µs, and whether the session's first
// request reached the primary before its binding (a race), and before the
// worker had even sent it.
function analyse(stamps, into) {
  const send = new Map();
  const bound = new Map();
  for (const s of stamps) {
    if (s.what === 'send') send.set(s.sid, s.t);
    if (s.what === 'bound') bound.set(s.sid, s.t);
  }
  for (const [sid, t] of send) if (bound.has(sid)) into.latencies.push(Number(bound.get(sid) - t) / 1000);
  const first = new Set();
  for (const s of stamps) {
    if (s.what !== 'req' || s.sid === '-' || first.has(s.sid)) continue;
    first.add(s.sid);
    const b = bound.get(s.sid);
    if (b === undefined || b > s.t) {
      into.raced++;
      const w = send.get(s.sid);
      if (w === undefined || w > s.t) into.beforeSend++;
    }
  }
}

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

const hogs = [0, 1].map(() => spawn(process.execPath, ['-e', 'for(;;);'], { stdio: 'ignore' }));
const totals = {};
try {
  for (let r = 1; r <= rounds; r++) {
    for (const impl of ['native', 'stock']) {
      const t = (totals[impl] ??= { runs: 0, failed: 0, raced: 0, beforeSend: 0, latencies: [] });
      let failed = 0;
      for (let i = 0; i < runs; i++) {
        const one = await run(impl);
        t.runs++;
        if (one.failed) {
          t.failed++;
          failed++;
        }
        analyse(one.stamps, t);
      }
      console.error(`round ${r}/${rounds} ${impl}: ${failed} of ${runs} runs failed`);
    }
  }
} finally {
  for (const h of hogs) h.kill('SIGKILL');
}

const ms = (x) => (x / 1000).toFixed(2);
console.log(`\n@socket.io/sticky, 10 clients at once beside 2 CPU hogs — ${new Date().toISOString()} — node ${process.version}`);
console.log('| | native | stock |\n| --- | --- | --- |');
const row = (label, f) => console.log(`| ${label} | ${f(totals.native)} | ${f(totals.stock)} |`);
row('runs with a broken session', (t) => `${t.failed} of ${t.runs}`);
row('sessions whose first request beat their binding', (t) => `${t.raced}`);
row('… of which before the worker had sent it', (t) => `${t.beforeSend}`);
row('worker message → primary JavaScript, p50 ms', (t) => ms(quantile(t.latencies, 0.5)));
row('same, p90 ms', (t) => ms(quantile(t.latencies, 0.9)));
