'use strict';
// The benchmark primary: `node primary.cjs '<json config>'`.
//
// config.impl picks the cluster implementation: 'native' (this package),
// 'stock' (node:cluster) or 'single' (no cluster: this process serves HTTP
// itself, the reference). config.mode:
//   http  fork config.workers HTTP workers on config.port, print
//         `@@bench {"ready":...}`, then obey stdin commands: `stats` (each
//         worker's request count, CPU, RSS) and `exit`. config.busy makes the
//         primary's JavaScript busy-wait 50 ms every 100 ms.
//   fork  time until config.workers workers are online and listening, and
//         the time spent inside the synchronous cluster.fork() calls.
//   ipc   one worker with config.serialization: round trips, one-way
//         small and 64 KiB message rates in both directions.
// Protocol lines on stdout start with `@@bench `; anything else is noise.

const path = require('node:path');
const readline = require('node:readline');
const { performance } = require('node:perf_hooks');

const cfg = JSON.parse(process.argv[2]);

const debug = process.env.BENCH_DEBUG ? (...a) => console.error('[primary]', ...a) : () => {};

function emit(obj) {
  process.stdout.write(`@@bench ${JSON.stringify(obj)}\n`);
}

const t0 = performance.now();
// By name, resolved through package.json as an installed app resolves it.
const cluster = cfg.impl === 'native' ? require('native-cluster') : cfg.impl === 'stock' ? require('node:cluster') : null;
// Workers not yet exited: cluster.workers forgets a worker as soon as it is
// asked to disconnect, and shutdown must still wait for its exit.
const alive = new Set();
if (cluster) {
  cluster.on('fork', (w) => alive.add(w));
  cluster.on('exit', (w) => alive.delete(w));
}
const requireMs = performance.now() - t0;

function once(emitter, event, filter = () => true) {
  return new Promise((resolve) => {
    const on = (...args) => {
      if (!filter(...args)) return;
      emitter.off(event, on);
      resolve(args);
    };
    emitter.on(event, on);
  });
}

function setup(exec, args, extra = {}) {
  const policies = { none: cluster.SCHED_NONE, rr: cluster.SCHED_RR, reuseport: cluster.SCHED_REUSEPORT };
  cluster.schedulingPolicy = policies[cfg.policy] ?? cluster.SCHED_RR;
  cluster.setupPrimary({ exec: path.join(__dirname, exec), args, ...extra });
}

function whenAll(event, n) {
  return new Promise((resolve) => {
    let seen = 0;
    const on = () => {
      if (++seen === n) {
        cluster.off(event, on);
        resolve(performance.now());
      }
    };
    cluster.on(event, on);
  });
}

async function shutdown() {
  finishing = true;
  if (cluster) {
    const workers = [...alive];
    const timer = setTimeout(() => {
      for (const w of workers) w.process.kill('SIGKILL');
      process.exit(0);
    }, 5000);
    await Promise.all(workers.map((w) => (w.isDead() ? null : once(w, 'exit'))));
    clearTimeout(timer);
  }
  process.exit(0);
}

async function http() {
  const port = cfg.port;
  let server = null;
  let workers = [];
  if (cfg.impl === 'single') {
    const hw = require('./http_worker.cjs');
    server = hw.createServer();
    await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  } else {
    setup('http_worker.cjs', [String(port)]);
    const listening = whenAll('listening', cfg.workers);
    for (let i = 0; i < cfg.workers; i++) workers.push(cluster.fork());
    await listening;
  }
  let busy = null;
  if (cfg.busy) {
    busy = setInterval(() => {
      const end = performance.now() + 50;
      while (performance.now() < end);
    }, 100);
  }
  emit({ ready: true, primary: process.pid, workers: workers.map((w) => w.process.pid) });
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const cmd = line.trim();
    if (cmd === 'stats') {
      if (server) {
        emit({ stats: [require('./http_worker.cjs').stats()] });
      } else {
        const replies = workers.map((w) =>
          once(w, 'message', (m) => m && m.bench === 'stats').then(([m]) => m));
        for (const w of workers) w.send({ bench: 'stats' });
        emit({ stats: await Promise.all(replies) });
      }
    } else if (cmd === 'exit') {
      if (busy) clearInterval(busy);
      rl.close();
      finishing = true;
      if (server) server.close();
      else cluster.disconnect();
      return shutdown();
    }
  }
  return shutdown();
}

async function fork() {
  setup('http_worker.cjs', [String(cfg.port)]);
  const n = cfg.workers;
  const online = whenAll('online', n);
  const listening = whenAll('listening', n);
  let blocking = 0;
  let firstFork = 0;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    cluster.fork();
    const d = performance.now() - s;
    if (i === 0) firstFork = d;
    blocking += d;
  }
  const cpu = process.cpuUsage(cpu0);
  const [tOnline, tListening] = await Promise.all([online, listening]);
  emit({
    result: {
      online_ms: tOnline - start,
      listening_ms: tListening - start,
      fork_blocking_ms: blocking,
      // All threads of the primary, from the first fork() to the last return.
      fork_cpu_ms: (cpu.user + cpu.system) / 1000,
      first_fork_ms: firstFork,
      require_ms: requireMs,
    },
  });
  finishing = true;
  cluster.disconnect();
  return shutdown();
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function ipc() {
  setup('ipc_worker.cjs', [], { serialization: cfg.serialization });
  const worker = cluster.fork();
  await once(worker, 'online');
  const result = {};
  const reply = (c) => once(worker, 'message', (m) => m && m.c === c).then(([m]) => m);

  // Round trips, one at a time.
  const rtts = [];
  for (let i = 0; i < cfg.warmupPings + cfg.pings; i++) {
    const r = reply('pong');
    const s = performance.now();
    worker.send({ c: 'ping', i });
    await r;
    if (i >= cfg.warmupPings) rtts.push((performance.now() - s) * 1000);
  }
  debug('rtt done');
  rtts.sort((a, b) => a - b);
  result.rtt_p50_us = percentile(rtts, 50);
  result.rtt_p99_us = percentile(rtts, 99);

  for (const [name, size, batch] of [['small', 0, 500], ['64k', 64 * 1024, 8]]) {
    const window = 4;
    debug('p2w', name);
    worker.send({ c: 'p2w', batch });
    await reply('p2w-ready');
    const msg = size > 0 ? { c: 'd', d: 'x'.repeat(size) } : { c: 'd', i: 12345, s: 'hello' };
    result[`p2w_${name}_per_s`] = await new Promise((resolve) => {
      let inflight = 0;
      let acked = 0;
      const start = performance.now();
      const deadline = start + cfg.phaseMs;
      const fill = () => {
        while (inflight < window) {
          for (let i = 0; i < batch; i++) worker.send(msg);
          inflight++;
        }
      };
      const onMsg = (m) => {
        if (!m || m.c !== 'ack') return;
        inflight--;
        acked += batch;
        const now = performance.now();
        if (now < deadline) fill();
        else if (inflight === 0) {
          worker.off('message', onMsg);
          resolve(acked / ((now - start) / 1000));
        }
      };
      worker.on('message', onMsg);
      fill();
    });
    debug('w2p', name);
    let got = 0;
    const onData = (m) => {
      if (m && m.c === 'd' && ++got % batch === 0) worker.send({ c: 'ack' });
    };
    worker.on('message', onData);
    const done = reply('w2p-done');
    worker.send({ c: 'w2p', batch, window, durationMs: cfg.phaseMs, size });
    result[`w2p_${name}_per_s`] = (await done).rate;
    worker.off('message', onData);
  }
  emit({ result });
  finishing = true;
  cluster.disconnect();
  return shutdown();
}

// A worker that dies before the measurement is over spoils it: fail fast
// instead of waiting for events that will never come.
let finishing = false;
if (cluster) {
  cluster.on('exit', (w, code, signal) => {
    if (finishing) return;
    emit({ error: `worker ${w.id} exited early (code ${code}, signal ${signal})` });
    process.exit(1);
  });
}

({ http, fork, ipc })[cfg.mode]().catch((err) => {
  emit({ error: String(err && err.stack || err) });
  process.exit(1);
});
