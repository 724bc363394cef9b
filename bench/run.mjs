#!/usr/bin/env node
// `npm run bench`: every scenario against native-cluster and stock
// node:cluster in the same run, alternating which goes first, several
// rounds; prints medians, min–max and native/stock per metric, checks the
// project's targets, and writes every sample to bench/results/latest.jsonl.
//
//   node bench/run.mjs [--quick] [--only http,busy,fork,ipc,mem] [--rounds N]
//                      [--duration S] [--out FILE]
//
// Load comes from wrk (or autocannon when wrk is missing), always against
// 127.0.0.1, for a bounded duration.

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { freePort } from './free_port.mjs';
import { markdownTable } from './markdown_table.mjs';
import { setTimeout as sleep } from 'node:timers/promises';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const SCENARIOS = ['http', 'busy', 'fork', 'ipc', 'mem'];

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const o = { quick: false, only: SCENARIOS, rounds: null, duration: null, out: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--only') o.only = value().split(',').map((s) => s.trim()).filter(Boolean);
    else if (a === '--rounds') o.rounds = Number(value());
    else if (a === '--duration') o.duration = Number(value());
    else if (a === '--out') o.out = path.resolve(value());
    else if (a === '--help' || a === '-h') usage();
    else usage(`unknown argument ${a}`);
  }
  for (const s of o.only) if (!SCENARIOS.includes(s)) usage(`unknown scenario ${s}`);
  if (o.rounds !== null && !(o.rounds >= 1)) usage('--rounds must be >= 1');
  if (o.duration !== null && !(o.duration >= 1)) usage('--duration must be >= 1 (seconds)');
  return o;
}

function usage(err) {
  if (err) console.error(`bench: ${err}`);
  console.error('usage: node bench/run.mjs [--quick] [--only ' + SCENARIOS.join(',') +
    '] [--rounds N] [--duration S] [--out FILE]');
  process.exit(err ? 2 : 0);
}

const opts = parseArgs(process.argv.slice(2));
const Q = opts.quick;
const P = {
  // Rounds per scenario (each round runs native and stock once per variant).
  rounds: (s) => opts.rounds ?? (Q ? 1 : { http: 3, busy: 3, ipc: 5, fork: 5, mem: 5 }[s]),
  warmupS: 1,
  durationS: opts.duration ?? (Q ? 2 : 5),
  connections: 50,
  workers: 2,
  pings: Q ? 500 : 2000,
  warmupPings: Q ? 50 : 200,
  phaseMs: Q ? 300 : 1000,
  forkCounts: [1, 4, 16],
  startupRepeats: 5,
  timeoutMs: 120_000,
};

// ---------------------------------------------------------------- load generator

function findWrk() {
  const r = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  return r.error ? null : 'wrk';
}

function findAutocannon() {
  try {
    return require.resolve('autocannon');
  } catch {
    return null;
  }
}

// BENCH_LOADGEN=autocannon forces the fallback (to test it, or compare).
let loadgen = process.env.BENCH_LOADGEN === 'autocannon' ? null : findWrk();
if (!loadgen && opts.only.some((s) => s === 'http' || s === 'busy')) {
  if (process.env.BENCH_LOADGEN !== 'autocannon') console.error('bench: wrk not found. Install it with:\n' +
    '    apt-get install -y wrk        # Debian/Ubuntu (as root; else sudo apt-get install -y wrk)\n' +
    '    brew install wrk              # macOS');
  if (findAutocannon()) {
    loadgen = 'autocannon';
    console.error('bench: falling back to autocannon (it shares the CPU with the servers, ' +
      'so absolute numbers are lower than with wrk).');
  } else {
    console.error('bench: autocannon is not installed either (npm install --no-save autocannon); ' +
      'or run only the scenarios without HTTP load: --only fork,ipc,mem');
    process.exit(1);
  }
}

async function runWrk(port, seconds, close) {
  const args = ['-t1', `-c${P.connections}`, `-d${seconds}s`, '--timeout', '10s',
    '-s', path.join(here, 'wrk_report.lua')];
  if (close) args.push('-H', 'Connection: close');
  args.push(`http://127.0.0.1:${port}/`);
  // Through sh, whose cutime+cstime after waiting for wrk is wrk's CPU time.
  const child = spawn('sh', ['-c', 'wrk "$@"; rc=$?; echo "@@cpu $(cat /proc/$$/stat)"; exit $rc',
    'sh', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const killer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
  const [code] = await once(child, 'exit');
  clearTimeout(killer);
  const line = out.split('\n').find((l) => l.startsWith('@@wrk '));
  if (code !== 0 || !line) throw new Error(`wrk failed (exit ${code}): ${out.slice(-500)}`);
  const r = JSON.parse(line.slice(6));
  const e = r.errors;
  const cpuLine = out.split('\n').find((l) => l.startsWith('@@cpu '));
  const f = cpuLine ? cpuLine.slice(cpuLine.lastIndexOf(')') + 2).split(' ') : null;
  return {
    cpu_s: f ? (Number(f[13]) + Number(f[14])) / CLK_TCK : null,
    requests: r.requests,
    seconds: r.duration_us / 1e6,
    p50_ms: r.p50_us / 1000,
    p99_ms: r.p99_us / 1000,
    max_ms: r.max_us / 1000,
    errors: e.connect + e.read + e.write + e.status + e.timeout,
  };
}

async function runAutocannon(port, seconds, close) {
  const autocannon = require(findAutocannon());
  const r = await autocannon({
    url: `http://127.0.0.1:${port}/`,
    connections: P.connections,
    duration: seconds,
    headers: close ? { connection: 'close' } : {},
  });
  return {
    requests: r.requests.total,
    seconds: r.duration,
    p50_ms: r.latency.p50,
    p99_ms: r.latency.p99,
    max_ms: r.latency.max,
    errors: r.errors + r.timeouts + r.non2xx,
    cpu_s: null, // in-process: not separable from the orchestrator
  };
}

const load = (port, seconds, close) =>
  (loadgen === 'wrk' ? runWrk : runAutocannon)(port, seconds, close);

// ---------------------------------------------------------------- processes

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  return Number(r.stdout) > 0 ? Number(r.stdout) : 100;
})();

// utime + stime of a process (all its threads), in seconds.
function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

function rssMB(pid, field = 'VmRSS') {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

// One benchmark primary (bench/primary.cjs) and its line protocol.
class Primary {
  constructor(cfg) {
    this.child = spawn(process.execPath, [path.join(here, 'primary.cjs'), JSON.stringify(cfg)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.waiters = [];
    this.lines = [];
    this.exited = once(this.child, 'exit');
    this.exited.then(([code, signal]) => {
      const err = new Error(`primary exited (code ${code}, signal ${signal})`);
      for (const w of this.waiters.splice(0)) w.reject(err);
      this.dead = err;
    });
    readline.createInterface({ input: this.child.stdout }).on('line', (line) => {
      if (!line.startsWith('@@bench ')) return;
      const msg = JSON.parse(line.slice(8));
      const w = this.waiters.shift();
      if (w) w.resolve(msg);
      else this.lines.push(msg);
    });
    this.timer = setTimeout(() => this.kill(), P.timeoutMs);
  }

  next() {
    if (this.lines.length > 0) return Promise.resolve(this.check(this.lines.shift()));
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }))
      .then((m) => this.check(m));
  }

  check(msg) {
    if (msg.error) throw new Error(`primary: ${msg.error}`);
    return msg;
  }

  command(cmd) {
    this.child.stdin.write(`${cmd}\n`);
    return cmd === 'exit' ? this.finish() : this.next();
  }

  async finish() {
    const killer = setTimeout(() => this.kill(), 10_000);
    await this.exited;
    clearTimeout(killer);
    clearTimeout(this.timer);
  }

  kill() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------- measurements

async function measureHttp(impl, { policy = 'rr', close = false, busy = false, hog = false }) {
  const port = await freePort();
  const p = new Primary({ impl, mode: 'http', policy, workers: P.workers, port, busy });
  let hogProc = null;
  try {
    const ready = await p.next();
    if (hog) {
      const lifetime = (P.warmupS + P.durationS + 10) * 1000;
      hogProc = spawn(process.execPath, [path.join(here, 'hog.cjs'), '50', '100', String(lifetime)],
        { stdio: 'ignore' });
    }
    const serving = ready.workers.length > 0 ? ready.workers : [ready.primary];
    const primary = ready.workers.length > 0 ? ready.primary : null;
    await load(port, P.warmupS, close);
    const before = (await p.command('stats')).stats;
    const cpu0 = { p: primary && cpuSeconds(primary), w: serving.map(cpuSeconds) };
    const r = await load(port, P.durationS, close);
    const cpu1 = { p: primary && cpuSeconds(primary), w: serving.map(cpuSeconds) };
    if (hogProc) hogProc.kill('SIGKILL');
    const after = (await p.command('stats')).stats;
    const counts = after.map((s, i) => s.count - before[i].count);
    const total = counts.reduce((a, b) => a + b, 0);
    const workersCpu = cpu1.w.reduce((a, c, i) => a + c - cpu0.w[i], 0);
    const metrics = {
      rps: r.requests / r.seconds,
      p50_ms: r.p50_ms,
      p99_ms: r.p99_ms,
      max_ms: r.max_ms,
      primary_cpu_s: primary ? cpu1.p - cpu0.p : null,
      primary_us_per_req: primary ? ((cpu1.p - cpu0.p) * 1e6) / r.requests : null,
      workers_cpu_s: workersCpu,
      workers_us_per_req: (workersCpu * 1e6) / r.requests,
      loadgen_us_per_req: r.cpu_s === null ? null : (r.cpu_s * 1e6) / r.requests,
      busiest_worker_pct: total > 0 ? (Math.max(...counts) / total) * 100 : null,
      primary_rss_mb: primary ? rssMB(primary) : null,
      errors: r.errors,
    };
    await p.command('exit');
    return { metrics, extra: { counts, requests: r.requests, seconds: r.seconds } };
  } finally {
    if (hogProc) hogProc.kill('SIGKILL');
    p.kill();
  }
}

async function measureMem(impl) {
  const port = await freePort();
  const p = new Primary({ impl, mode: 'http', policy: 'rr', workers: P.workers, port });
  try {
    const ready = await p.next();
    await sleep(1000);
    const workers = ready.workers.map((pid) => rssMB(pid));
    const metrics = {
      primary_rss_mb: rssMB(ready.primary),
      worker_rss_mb: workers.reduce((a, b) => a + b, 0) / workers.length,
    };
    await p.command('exit');
    return { metrics, extra: { workers } };
  } finally {
    p.kill();
  }
}

async function measureOnce(cfg) {
  const p = new Primary(cfg);
  try {
    const { result } = await p.next();
    await p.finish();
    return { metrics: result };
  } finally {
    p.kill();
  }
}

// Medians of P.startupRepeats fresh start-ups of startup.cjs and
// startup.mjs: one sample of milliseconds is too noisy on a shared machine.
async function measureStartup(impl) {
  const runs = [];
  for (let i = 0; i < P.startupRepeats; i++) {
    const one = {};
    for (const file of ['startup.cjs', 'startup.mjs']) {
      const child = spawn(process.execPath, [path.join(here, file), impl], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d) => { out += d; });
      const [code, signal] = await once(child, 'exit');
      const line = out.split('\n').find((l) => l.startsWith('@@bench '));
      const msg = line ? JSON.parse(line.slice(8)) : { error: `${file} exited (code ${code}, signal ${signal})` };
      if (msg.error) throw new Error(`${file}: ${msg.error}`);
      Object.assign(one, msg.result);
    }
    runs.push(one);
  }
  const metrics = {};
  for (const key of Object.keys(runs[0])) metrics[key] = summarize(runs.map((r) => r[key])).median;
  return { metrics };
}

// ---------------------------------------------------------------- scenarios

// `metrics` are recorded and summarized (JSONL); `show` are the table's rows.
const HTTP_METRICS = ['rps', 'p50_ms', 'p99_ms', 'max_ms', 'primary_us_per_req', 'primary_cpu_s',
  'workers_us_per_req', 'loadgen_us_per_req', 'busiest_worker_pct', 'primary_rss_mb', 'errors'];
const HTTP_SHOW = ['rps', 'p50_ms', 'p99_ms', 'primary_us_per_req', 'workers_us_per_req',
  'busiest_worker_pct'];
const BUSY_SHOW = ['rps', 'p99_ms', 'max_ms'];

function scenarioVariants(name) {
  switch (name) {
    case 'http': {
      const v = [];
      for (const close of [false, true]) {
        const conn = close ? 'close' : 'keep-alive';
        for (const policy of ['rr', 'none']) {
          v.push({ name: `${conn} ${policy.toUpperCase()}`, impls: ['native', 'stock'], ref: `${conn} single`,
            metrics: HTTP_METRICS, run: (impl) => measureHttp(impl, { policy, close }),
            // Under SCHED_NONE the primary does nothing once the workers listen.
            show: HTTP_SHOW.filter((m) => policy === 'rr' || m !== 'primary_us_per_req') });
        }
        // Ours: each worker accepts from its own SO_REUSEPORT socket. Stock
        // has no such policy; its nearest (workers accept themselves) is NONE.
        v.push({ name: `${conn} REUSEPORT vs stock NONE`, impls: ['native', 'stock'], ref: `${conn} single`,
          metrics: HTTP_METRICS, show: HTTP_SHOW.filter((m) => m !== 'primary_us_per_req'),
          run: (impl) => measureHttp(impl, { policy: impl === 'native' ? 'reuseport' : 'none', close }) });
        v.push({ name: `${conn} single`, impls: ['single'], hidden: true,
          metrics: HTTP_METRICS, run: (impl) => measureHttp(impl, { close }) });
      }
      return v;
    }
    case 'busy':
      // idle, busy (the primary's JS busy-waits 50 ms every 100 ms), and the
      // control: an idle primary beside another process with that duty cycle.
      return [['idle primary', {}], ['busy primary', { busy: true }],
        ['idle primary + hog', { hog: true }]].map(([name, o]) => ({
        name: `close RR ${name}`, impls: ['native', 'stock'],
        metrics: HTTP_METRICS, show: BUSY_SHOW, run: (impl) => measureHttp(impl, { policy: 'rr', close: true, ...o }),
      }));
    case 'fork':
      return [...P.forkCounts.map((n) => ({
        name: `${n} worker${n > 1 ? 's' : ''}`, impls: ['native', 'stock'],
        metrics: ['online_ms', 'listening_ms', 'fork_blocking_ms', 'fork_cpu_ms', 'require_ms'],
        show: n === 1 ? ['online_ms', 'listening_ms', 'fork_blocking_ms', 'fork_cpu_ms']
          : n === 16 ? ['online_ms', 'listening_ms', 'fork_blocking_ms', 'fork_cpu_ms']
            : ['listening_ms', 'fork_blocking_ms'],
        // Port 0: all workers share one ephemeral port, as in Node.
        run: (impl) => measureOnce({ impl, mode: 'fork', workers: n, port: 0 }),
      })), {
        // Fresh processes (startup.cjs, startup.mjs): require and import by
        // the package's name in a primary and in the worker it forks.
        name: 'require/import', impls: ['native', 'stock'],
        metrics: ['require_ms', 'worker_require_ms', 'import_ms', 'worker_import_ms'],
        run: (impl) => measureStartup(impl),
      }];
    case 'ipc':
      return ['json', 'advanced'].map((serialization) => ({
        name: serialization, impls: ['native', 'stock'],
        metrics: ['rtt_p50_us', 'rtt_p99_us', 'p2w_small_per_s', 'w2p_small_per_s',
          'p2w_64k_per_s', 'w2p_64k_per_s'],
        run: (impl) => measureOnce({ impl, mode: 'ipc', serialization, pings: P.pings,
          warmupPings: P.warmupPings, phaseMs: P.phaseMs }),
      }));
    case 'mem':
      return [{ name: `${P.workers} idle HTTP workers`, impls: ['native', 'stock'],
        metrics: ['primary_rss_mb', 'worker_rss_mb'], run: (impl) => measureMem(impl) }];
    default:
      throw new Error(name);
  }
}

const LABELS = {
  rps: 'req/s',
  p50_ms: 'p50 latency ms',
  p99_ms: 'p99 latency ms',
  max_ms: 'max latency ms',
  primary_us_per_req: 'primary CPU µs/req',
  primary_cpu_s: 'primary CPU s',
  workers_us_per_req: 'workers CPU µs/req',
  busiest_worker_pct: 'busiest worker % of reqs',
  primary_rss_mb: 'primary RSS MB',
  worker_rss_mb: 'worker RSS MB (mean)',
  errors: 'socket errors',
  online_ms: 'all online ms',
  listening_ms: 'all listening ms',
  fork_blocking_ms: 'sum of fork() wall ms',
  fork_cpu_ms: 'primary CPU ms in fork()s',
  loadgen_us_per_req: 'load generator CPU µs/req',
  require_ms: 'primary require(cluster) ms',
  worker_require_ms: 'worker require(cluster) ms',
  import_ms: 'primary import(cluster) ms',
  worker_import_ms: 'worker import(cluster) ms',
  rtt_p50_us: 'round trip p50 µs',
  rtt_p99_us: 'round trip p99 µs',
  p2w_small_per_s: 'primary→worker small msg/s',
  w2p_small_per_s: 'worker→primary small msg/s',
  p2w_64k_per_s: 'primary→worker 64 KiB msg/s',
  w2p_64k_per_s: 'worker→primary 64 KiB msg/s',
};

// ---------------------------------------------------------------- statistics

function summarize(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { median, min: v[0], max: v[v.length - 1], n: v.length };
}

function fmt(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  const a = Math.abs(x);
  if (a >= 1e5) return `${(x / 1000).toFixed(0)}k`;
  if (a >= 1e4) return `${(x / 1000).toFixed(1)}k`;
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  if (a === 0) return '0';
  return x.toPrecision(2);
}

const cell = (s) => (s ? `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})` : '—');

// ---------------------------------------------------------------- main

const outFile = opts.out ?? path.join(here, 'results', 'latest.jsonl');
fs.mkdirSync(path.dirname(outFile), { recursive: true });
const out = fs.createWriteStream(outFile);
const record = (obj) => out.write(`${JSON.stringify(obj)}\n`);

record({
  type: 'run', ts: new Date().toISOString(), node: process.version, cpus: os.cpus().length,
  loadgen, quick: Q, only: opts.only, params: { ...P, rounds: undefined },
  git: spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: here, encoding: 'utf8' }).stdout?.trim(),
  addon: (() => {
    const f = fs.readdirSync(path.join(here, '..')).find((n) => n.endsWith('.node'));
    return f ? { file: f, mtime: fs.statSync(path.join(here, '..', f)).mtime.toISOString() } : null;
  })(),
});

const t0 = Date.now();
const results = new Map(); // `${scenario}/${variant}` -> { variant, samples: {impl: [metrics]} }
let failures = 0;

for (const scenario of opts.only) {
  const variants = scenarioVariants(scenario);
  const rounds = P.rounds(scenario);
  for (const v of variants) results.set(`${scenario}/${v.name}`, { scenario, v, samples: {} });
  for (let round = 0; round < rounds; round++) {
    for (const [vi, v] of variants.entries()) {
      // Alternate which implementation goes first, round by round.
      const impls = (round + vi) % 2 === 0 ? v.impls : [...v.impls].reverse();
      for (const impl of impls) {
        const label = `${scenario} | ${v.name} | ${impl} | round ${round + 1}/${rounds}`;
        process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s] ${label}`);
        let sample;
        // One retry: a shared, noisy machine can take the port between
        // freePort() and the bind, or starve a worker past a timeout.
        for (let attempt = 1; attempt <= 2 && !sample; attempt++) {
          try {
            sample = await v.run(impl);
          } catch (err) {
            process.stderr.write(`  FAILED (attempt ${attempt}): ${err.message}\n`);
            record({ type: 'failure', scenario, variant: v.name, impl, round, attempt, error: err.message });
          }
        }
        if (!sample) {
          failures++;
          continue;
        }
        const m = sample.metrics;
        const brief = ['rps', 'online_ms', 'rtt_p50_us', 'primary_rss_mb', 'require_ms'].find((k) => m[k] != null);
        process.stderr.write(`  ${LABELS[brief]} ${fmt(m[brief])}\n`);
        record({ type: 'sample', scenario, variant: v.name, impl, round, ...sample });
        const slot = results.get(`${scenario}/${v.name}`).samples;
        (slot[impl] ??= []).push(m);
      }
    }
  }
}

// Summaries: median, min, max per (variant, impl, metric) and the ratio.
const summary = new Map();
const stat = (scenario, variant, impl, metric) =>
  summary.get(`${scenario}/${variant}`)?.[impl]?.[metric] ?? null;
for (const [key, { scenario, v, samples }] of results) {
  const s = {};
  for (const impl of v.impls) {
    s[impl] = {};
    for (const metric of v.metrics) s[impl][metric] = summarize((samples[impl] ?? []).map((m) => m[metric]));
  }
  summary.set(key, s);
  for (const metric of v.metrics) {
    const n = s.native?.[metric];
    const st = s.stock?.[metric];
    const ratio = n && st && st.median !== 0 ? n.median / st.median : null;
    record({ type: 'summary', scenario, variant: v.name, metric, native: n ?? null,
      stock: st ?? null, single: s.single?.[metric] ?? null, ratio });
  }
}

// The table.
const rows = [['scenario', 'variant', 'metric', 'native median (min–max)', 'stock median (min–max)',
  'native/stock', 'single process']];
for (const [key, { scenario, v }] of results) {
  if (v.hidden) continue;
  for (const metric of v.show ?? v.metrics) {
    const n = stat(scenario, v.name, 'native', metric);
    const s = stat(scenario, v.name, 'stock', metric);
    const ratio = n && s && s.median !== 0 ? n.median / s.median : null;
    const ref = v.ref ? stat(scenario, v.ref, 'single', metric) : null;
    rows.push([scenario, v.name, LABELS[metric] ?? metric, cell(n), cell(s),
      ratio === null ? '—' : `${ratio.toFixed(2)}×`, ref ? cell(ref) : '']);
  }
  void key;
}
const table = markdownTable(rows);

// The targets (medians, native/stock in this run).
const med = (scenario, variant, impl, metric) => stat(scenario, variant, impl, metric)?.median ?? null;
const ratioOf = (scenario, variant, metric) => {
  const n = med(scenario, variant, 'native', metric);
  const s = med(scenario, variant, 'stock', metric);
  return n !== null && s !== null && s !== 0 ? n / s : null;
};
const targets = [];
const controls = [];
const target = (name, value, goal, ok, unit = '×') => {
  if (value === null || Number.isNaN(value)) return;
  targets.push({ name, value, goal, met: ok(value), unit });
};
const ge = (g) => (x) => x >= g;
const le = (g) => (x) => x <= g;
if (opts.only.includes('http')) {
  target('RR close req/s vs stock RR', ratioOf('http', 'close RR', 'rps'), '≥ 1.5×', ge(1.5));
  target('RR close primary CPU/req vs stock RR', ratioOf('http', 'close RR', 'primary_us_per_req'), '≤ 0.25×', le(0.25));
  const nr = med('http', 'close RR', 'native', 'rps');
  const sn = med('http', 'close NONE', 'stock', 'rps');
  if (nr !== null && sn) target('RR close req/s vs stock NONE', nr / sn, '≥ 0.9×', ge(0.9));
  target('keep-alive RR req/s vs stock', ratioOf('http', 'keep-alive RR', 'rps'), '≥ 0.95×', ge(0.95));
  target('keep-alive NONE req/s vs stock', ratioOf('http', 'keep-alive NONE', 'rps'), '≥ 0.95×', ge(0.95));
}
if (opts.only.includes('busy')) {
  const b = (impl, m) => med('busy', 'close RR busy primary', impl, m);
  const i = (impl, m) => med('busy', 'close RR idle primary', impl, m);
  if (b('native', 'p99_ms') !== null && i('native', 'p99_ms')) {
    target('busy primary: native p99 vs native idle p99', b('native', 'p99_ms') / i('native', 'p99_ms'), '≤ 1.2×', le(1.2));
    target('busy primary: native req/s vs native idle', b('native', 'rps') / i('native', 'rps'), '≥ 0.9×', ge(0.9));
  }
  // Not targets: the same ratios against the CPU-hog control, i.e. what is
  // left once the CPU the busy-wait burns is accounted for.
  const h = (impl, m) => med('busy', 'close RR idle primary + hog', impl, m);
  if (b('native', 'p99_ms') !== null && h('native', 'p99_ms')) {
    controls.push(`busy primary: native p99 vs native idle+hog p99: ${(b('native', 'p99_ms') / h('native', 'p99_ms')).toFixed(2)}×`);
    controls.push(`busy primary: native req/s vs native idle+hog: ${(b('native', 'rps') / h('native', 'rps')).toFixed(2)}×`);
  }
}
if (opts.only.includes('fork')) {
  target('fork: 16 online vs stock', ratioOf('fork', '16 workers', 'online_ms'), '≤ 1.0×', le(1.0));
  target('fork: 16 listening vs stock', ratioOf('fork', '16 workers', 'listening_ms'), '≤ 1.0×', le(1.0));
  target('fork: 16 fork() blocking vs stock', ratioOf('fork', '16 workers', 'fork_blocking_ms'), '≤ 0.25×', le(0.25));
  target('fork: 1 listening vs stock', ratioOf('fork', '1 worker', 'listening_ms'), '≤ 1.0×', le(1.0));
  target('fork: primary require vs stock', ratioOf('fork', 'require/import', 'require_ms'), '≤ 1.5×', le(1.5));
  target('fork: primary import vs stock', ratioOf('fork', 'require/import', 'import_ms'), '≤ 1.5×', le(1.5));
}
if (opts.only.includes('ipc')) {
  for (const ser of ['json', 'advanced']) {
    target(`IPC ${ser}: primary→worker small msg/s`, ratioOf('ipc', ser, 'p2w_small_per_s'), '≥ 1.5×', ge(1.5));
    target(`IPC ${ser}: worker→primary small msg/s`, ratioOf('ipc', ser, 'w2p_small_per_s'), '≥ 1.5×', ge(1.5));
    target(`IPC ${ser}: round trip p50`, ratioOf('ipc', ser, 'rtt_p50_us'), '≤ 1.0×', le(1.0));
    target(`IPC ${ser}: primary→worker 64 KiB msg/s`, ratioOf('ipc', ser, 'p2w_64k_per_s'), '≥ 1.0×', ge(1.0));
    target(`IPC ${ser}: worker→primary 64 KiB msg/s`, ratioOf('ipc', ser, 'w2p_64k_per_s'), '≥ 1.0×', ge(1.0));
  }
}
if (opts.only.includes('mem')) {
  const v = `${P.workers} idle HTTP workers`;
  const n = med('mem', v, 'native', 'primary_rss_mb');
  const s = med('mem', v, 'stock', 'primary_rss_mb');
  if (n !== null && s !== null) target('idle primary RSS − stock (MB)', n - s, '≤ +10 MB', le(10), ' MB');
}
if (opts.only.includes('http')) {
  const n = med('http', 'close RR', 'native', 'primary_rss_mb');
  const s = med('http', 'close RR', 'stock', 'primary_rss_mb');
  if (n !== null && s !== null) target('primary RSS after RR close load − stock (MB)', n - s, '≤ +10 MB', le(10), ' MB');
}
for (const t of targets) record({ type: 'target', ...t });
for (const c of controls) record({ type: 'control', text: c });

const secs = ((Date.now() - t0) / 1000).toFixed(0);
const header = `native-cluster bench — ${new Date().toISOString()} — node ${process.version}, ` +
  `${os.cpus().length} CPUs, load: ${loadgen === 'wrk' ? 'wrk -t1' : loadgen ?? 'none'} -c${P.connections} ` +
  `${P.durationS}s (+${P.warmupS}s warm-up), ${P.workers} workers; rounds: ` +
  opts.only.map((s) => `${s} ${P.rounds(s)}`).join(', ') + `; took ${secs}s` +
  (failures ? `; ${failures} FAILED measurement(s), see the JSONL` : '');
const targetLines = targets.map((t) =>
  `${t.met ? 'MET    ' : 'NOT MET'}  ${t.name}: ${t.unit === '×' ? t.value.toFixed(2) + '×' : (t.value >= 0 ? '+' : '') + t.value.toFixed(1) + t.unit} (target ${t.goal})`);
const errorNotes = [];
for (const [, { v, samples }] of results) {
  for (const [impl, list] of Object.entries(samples)) {
    const n = list.reduce((acc, m) => acc + (m.errors > 0 ? m.errors : 0), 0);
    if (n > 0) errorNotes.push(`socket errors: ${v.name} ${impl}: ${n} over ${list.length} samples`);
  }
}
const report = [header, '', ...table, ...(errorNotes.length ? ['', ...errorNotes] : []),
  '', 'Targets (medians of this run):', ...targetLines,
  ...(controls.length ? ['', 'Controls (not targets):', ...controls] : []), ''].join('\n');
process.stdout.write(`\n${report}`);
fs.writeFileSync(outFile.replace(/\.jsonl$/, '') + '.txt', report);
out.end();
await once(out, 'finish');
console.log(`\nsamples: ${path.relative(process.cwd(), outFile)}`);
process.exitCode = failures ? 1 : 0;
