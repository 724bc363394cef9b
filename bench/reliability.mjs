#!/usr/bin/env node
// Reliability figures, native-cluster against stock node:cluster in one
// run (not a test: it prints numbers and asserts nothing).
//
//   node bench/reliability.mjs [--rounds N] [--only storm,flood,grace] [--quick]
//
//   storm  2 RR workers, 20 client loops of `Connection: close` requests for
//          8 s; every 300 ms a random worker is SIGKILLed, but only while
//          both listen (so one always serves); re-forked on 'exit'.
//          Requests served, failed (by kind), failures per kill, and how
//          many connections the killed worker had open, and how many of
//          them it had not answered yet (its last report, at most 20 ms
//          old): what a kill takes with it.
//   flood  one worker sends 5,000,000 small messages (sending while
//          process.send() returns true, else waiting for the callback)
//          while the primary's JavaScript is blocked for 3 s: peak primary
//          RSS (VmHWM), RSS after the drain (after a GC), all delivered in
//          order, time.
//   grace  2 RR workers on a fixed port under load (20 client loops); both
//          SIGKILLed at once, re-forked on 'exit': refused connections with
//          listenGrace 3000, without it, and with stock.
//
// Each scenario runs ROUNDS times per implementation (alternating which
// goes first); medians and min–max are printed. Load comes from a separate
// Node process (http.get, agent: false) on 127.0.0.1.
//
// One file plays every part: the orchestrator (no BENCH_ROLE), a benchmark
// primary (BENCH_ROLE=primary), its workers (cluster.fork() runs this file
// again, with BENCH_ROLE=worker), and the load client (BENCH_ROLE=client).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { fileURLToPath } from 'node:url';
import { freePort } from './free_port.mjs';

const self = fileURLToPath(import.meta.url);
const root = path.resolve(path.dirname(self), '..');
const ROLE = process.env.BENCH_ROLE;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const emit = (obj) => process.stdout.write(`@@bench ${JSON.stringify(obj)}\n`);
const status = (pid, name) => {
  const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm'));
  return m ? Number(m[1]) : NaN;
};

async function loadCluster(impl) {
  if (impl === 'stock') return (await import('node:cluster')).default;
  const { createRequire } = await import('node:module');
  return createRequire(import.meta.url)(root);
}

// ------------------------------------------------------------------ client

// BENCH_PORT, BENCH_CONC loops, BENCH_MS duration: counts by outcome, and
// the time of every refusal relative to the start.
async function clientMain() {
  const port = Number(process.env.BENCH_PORT);
  const conc = Number(process.env.BENCH_CONC || 20);
  const ms = Number(process.env.BENCH_MS || 8000);
  const timeout = Number(process.env.BENCH_TIMEOUT || 2000);
  const t0 = Date.now();
  const out = { ok: 0, failed: 0, byError: {}, maxMs: 0 };
  const one = () => new Promise((resolve) => {
    const start = Date.now();
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      if (err) {
        out.failed++;
        out.byError[err] = (out.byError[err] || 0) + 1;
      } else {
        out.ok++;
      }
      out.maxMs = Math.max(out.maxMs, Date.now() - start);
      resolve(err);
    };
    const req = http.get({ host: '127.0.0.1', port, agent: false, headers: { connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => finish(res.statusCode === 200 ? null : `HTTP ${res.statusCode}`));
      res.on('error', (e) => finish(e.code || 'error'));
    });
    req.setTimeout(timeout, () => { req.destroy(); finish('TIMEOUT'); });
    req.on('error', (e) => finish(e.code || 'error'));
  });
  const loop = async () => {
    while (Date.now() - t0 < ms) {
      if (await one()) await sleep(2);
    }
  };
  process.stdout.write('@@ready\n');
  await Promise.all(Array.from({ length: conc }, loop));
  emit(out);
}

function startClient(port, conc, ms, timeout = 2000) {
  const c = spawn(process.execPath, [self], {
    env: { ...process.env, BENCH_ROLE: 'client', BENCH_PORT: String(port), BENCH_CONC: String(conc), BENCH_MS: String(ms), BENCH_TIMEOUT: String(timeout) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let buf = '';
  let readyResolve;
  const ready = new Promise((r) => { readyResolve = r; });
  const done = new Promise((resolve) => {
    c.stdout.on('data', (d) => {
      buf += d;
      if (buf.includes('@@ready')) readyResolve();
    });
    c.on('close', () => {
      const m = buf.match(/^@@bench (.*)$/m);
      resolve(m ? JSON.parse(m[1]) : { ok: 0, failed: NaN, byError: {} });
    });
  });
  return { ready, done };
}

// ------------------------------------------------------------------ primary

async function primaryMain() {
  const impl = process.env.IMPL;
  const scenario = process.env.BENCH_SCENARIO;
  const cluster = await loadCluster(impl);
  cluster.schedulingPolicy = cluster.SCHED_RR;
  const listening = (w) => new Promise((r) => w.once('listening', r));

  if (scenario === 'storm') {
    const port = await freePort();
    const env = { BENCH_ROLE: 'worker', BENCH_PORT: String(port) };
    let running = true;
    let kills = 0;
    // Connections open in each worker, as it last reported (every 20 ms),
    // and in each victim when it was killed: what a kill can take with it.
    const open = new Map();
    const openAtKill = [];
    const unansweredAtKill = [];
    cluster.on('message', (w, m) => { if (m && typeof m.open === 'number') open.set(w.id, m); });
    cluster.on('exit', () => { if (running) cluster.fork(env); });
    await Promise.all([cluster.fork(env), cluster.fork(env)].map(listening));
    const client = startClient(port, 20, 8000);
    await client.ready;
    const killer = setInterval(() => {
      const ws = Object.values(cluster.workers).filter((w) => w.state === 'listening');
      if (ws.length < 2) return;
      const victim = ws[Math.floor(Math.random() * 2)];
      victim.process.kill('SIGKILL');
      if (open.has(victim.id)) {
        openAtKill.push(open.get(victim.id).open);
        unansweredAtKill.push(open.get(victim.id).unanswered);
      }
      kills++;
    }, 300);
    // Only while the clients send: a kill while they wait out a hung
    // request (stock's, up to 2 s) could lose nothing and would lower the
    // failures per kill.
    const loadEnds = setTimeout(() => clearInterval(killer), 8000);
    const r = await client.done;
    clearTimeout(loadEnds);
    clearInterval(killer);
    running = false;
    const mean = (a) => a.reduce((x, y) => x + y, 0) / Math.max(1, a.length);
    emit({
      requests: r.ok, failed: r.failed, byError: r.byError, kills, failuresPerKill: r.failed / kills,
      openPerKill: mean(openAtKill), unansweredPerKill: mean(unansweredAtKill),
      reroutedPerKill: typeof cluster.stats === 'function' ? cluster.stats().primary.connections.rerouted / kills : null,
    });
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
    process.exit(0);
  }

  if (scenario === 'grace') {
    const grace = Number(process.env.BENCH_GRACE || 0);
    if (impl === 'native') cluster.setupPrimary({ listenGrace: grace });
    const port = await freePort();
    const env = { BENCH_ROLE: 'worker', BENCH_PORT: String(port) };
    let killed = false;
    let stop = false;
    cluster.on('exit', () => { if (killed && !stop) cluster.fork(env); });
    await Promise.all([cluster.fork(env), cluster.fork(env)].map(listening));
    const client = startClient(port, 20, 3000, 5000);
    await client.ready;
    await sleep(1000);
    killed = true;
    const t0 = Date.now();
    const back = new Promise((resolve) => {
      let n = 0;
      cluster.on('listening', () => { if (++n === 2) resolve(Date.now() - t0); });
    });
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
    const relistenMs = await back;
    const r = await client.done;
    stop = true;
    emit({ requests: r.ok, failed: r.failed, refused: r.byError.ECONNREFUSED || 0, byError: r.byError, relistenMs, maxMs: r.maxMs });
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
    process.exit(0);
  }

  if (scenario === 'flood') {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc');
    const COUNT = Number(process.env.BENCH_COUNT);
    const w = cluster.fork({ BENCH_ROLE: 'worker' });
    let next = 0;
    let inOrder = true;
    let t0;
    let rss0;
    await new Promise((resolve) => {
      w.on('message', (m) => {
        if (m === 'ready') {
          gc();
          rss0 = status('self', 'VmRSS');
          t0 = Date.now();
          w.send('go');
          const end = Date.now() + 3000;
          while (Date.now() < end);
          return;
        }
        if (m.i !== next) { inOrder = false; next = m.i; }
        if (++next === COUNT) resolve();
      });
    });
    const ms = Date.now() - t0;
    const hwm = status('self', 'VmHWM');
    const drained = status('self', 'VmRSS');
    await sleep(50);
    gc();
    emit({ peakMB: hwm / 1024, startMB: rss0 / 1024, drainedMB: drained / 1024, afterGcMB: status('self', 'VmRSS') / 1024, inOrder, ms });
    w.process.kill('SIGKILL');
    process.exit(0);
  }
}

// ------------------------------------------------------------------ worker

async function workerMain() {
  const cluster = await loadCluster(process.env.IMPL);
  if (process.env.BENCH_SCENARIO === 'flood') {
    const COUNT = Number(process.env.BENCH_COUNT);
    let i = 0;
    const pump = () => {
      while (i < COUNT) {
        if (!process.send({ i: i++ })) {
          if (i < COUNT) process.send({ i: i++ }, pump);
          return;
        }
      }
    };
    process.on('message', (m) => { if (m === 'go') pump(); });
    process.send('ready');
    return;
  }
  const storm = process.env.BENCH_SCENARIO === 'storm';
  // In the storm: connections open, and those not answered yet (no
  // response handed to the kernel): what a kill loses for certain.
  let open = 0;
  let unanswered = 0;
  const answered = (socket) => {
    if (socket.answered) return;
    socket.answered = true;
    unanswered--;
  };
  const server = http.createServer((req, res) => {
    if (storm) res.once('finish', () => answered(req.socket));
    res.end(`worker ${cluster.worker.id}`);
  }).listen(Number(process.env.BENCH_PORT), '127.0.0.1');
  if (storm) {
    server.on('connection', (socket) => {
      open++;
      unanswered++;
      socket.once('close', () => {
        open--;
        answered(socket);
      });
    });
    setInterval(() => process.send({ open, unanswered }), 20).unref();
  }
}

// ------------------------------------------------------------------ orchestrator

function runPrimary(impl, scenario, extra = {}) {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [self], {
      env: { ...process.env, BENCH_ROLE: 'primary', IMPL: impl, BENCH_SCENARIO: scenario, ...extra },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let buf = '';
    const timer = setTimeout(() => c.kill('SIGKILL'), 180_000);
    c.stdout.on('data', (d) => { buf += d; });
    c.on('exit', () => {
      clearTimeout(timer);
      const m = buf.match(/^@@bench (.*)$/m);
      resolve(m ? JSON.parse(m[1]) : null);
    });
  });
}

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (x) => {
  if (typeof x === 'string') return x;
  if (!Number.isFinite(x)) return 'n/a';
  if (Math.abs(x) >= 100) return String(Math.round(x));
  return String(Math.round(x * 100) / 100);
};
const cell = (xs) => {
  if (xs.every((x) => typeof x === 'boolean')) return xs.every(Boolean) ? `yes (${xs.length}/${xs.length})` : `NO (${xs.filter(Boolean).length}/${xs.length})`;
  const nums = xs.filter((x) => Number.isFinite(x));
  if (nums.length === 0) return 'n/a';
  return `${fmt(median(nums))} (${fmt(Math.min(...nums))}–${fmt(Math.max(...nums))})`;
};

async function orchestrate() {
  const args = process.argv.slice(2);
  let rounds = 3;
  let only = ['storm', 'flood', 'grace'];
  let quick = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--rounds') rounds = Number(args[++i]);
    else if (args[i] === '--only') only = args[++i].split(',');
    else if (args[i] === '--quick') quick = true;
    else {
      console.error('usage: node bench/reliability.mjs [--rounds N] [--only storm,flood,grace] [--quick]');
      process.exit(2);
    }
  }
  const count = quick ? 500_000 : 5_000_000;
  const started = Date.now();
  console.log(`native-cluster reliability bench — ${new Date().toISOString()} — node ${process.version}, ${os.cpus().length} CPUs, loadavg ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; ${rounds} rounds, medians (min–max)`);
  const variants = [];
  if (only.includes('storm')) {
    variants.push({ scenario: 'storm', label: 'crash storm', runs: [['native', {}], ['stock', {}]],
      metrics: [['requests', 'requests'], ['failed', 'failed requests'], ['kills', 'kills'], ['failuresPerKill', 'failures per kill'], ['timeouts', 'of which hung (2 s timeout)'], ['openPerKill', 'connections open in the victim at its kill'], ['unansweredPerKill', '… of which not answered yet'], ['reroutedPerKill', 'unacknowledged connections re-routed per kill']] });
  }
  if (only.includes('flood')) {
    variants.push({ scenario: 'flood', label: `flood ${count.toLocaleString('en')} msgs`, runs: [['native', { BENCH_COUNT: String(count) }], ['stock', { BENCH_COUNT: String(count) }]],
      metrics: [['peakMB', 'peak primary RSS MB'], ['startMB', 'RSS before MB'], ['drainedMB', 'RSS at drain MB'], ['afterGcMB', 'RSS after drain+GC MB'], ['inOrder', 'all delivered in order'], ['ms', 'time ms']] });
  }
  if (only.includes('grace')) {
    variants.push({ scenario: 'grace', label: 'kill all under load', runs: [['native', { BENCH_GRACE: '3000' }, 'native grace 3000'], ['native', { BENCH_GRACE: '0' }, 'native grace 0'], ['stock', {}]],
      metrics: [['refused', 'refused connections'], ['failed', 'failed requests (all kinds)'], ['requests', 'requests'], ['relistenMs', 'replacements listening ms']] });
  }
  const rows = [];
  for (const v of variants) {
    const samples = new Map();
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 ? [...v.runs].reverse() : v.runs;
      for (const [impl, extra, name = impl] of order) {
        const r = await runPrimary(impl, v.scenario, extra);
        if (r && r.byError) r.timeouts = r.byError.TIMEOUT || 0;
        if (!samples.has(name)) samples.set(name, []);
        samples.get(name).push(r);
        process.stderr.write(`  ${v.scenario} round ${round + 1} ${name}: ${JSON.stringify(r)}\n`);
      }
    }
    for (const [key, label] of v.metrics) {
      const row = { scenario: v.label, metric: label };
      for (const [name, rs] of samples) row[name] = cell(rs.map((r) => (r ? r[key] : NaN)));
      rows.push(row);
    }
  }
  // One table per scenario: its columns are the variants it ran.
  let last = null;
  for (const row of rows) {
    const cols = Object.keys(row).filter((k) => k !== 'scenario' && k !== 'metric');
    if (row.scenario !== last) {
      last = row.scenario;
      console.log(`\n${row.scenario}`);
      console.log(['metric'.padEnd(30), ...cols.map((c) => c.padEnd(26))].join(' | '));
      console.log(['-'.repeat(30), ...cols.map(() => '-'.repeat(26))].join('-|-'));
    }
    console.log([row.metric.padEnd(30), ...cols.map((c) => String(row[c]).padEnd(26))].join(' | '));
  }
  console.log(`\ntook ${Math.round((Date.now() - started) / 1000)} s`);
}

if (ROLE === 'worker') await workerMain();
else if (ROLE === 'client') await clientMain();
else if (ROLE === 'primary') await primaryMain();
else await orchestrate();
