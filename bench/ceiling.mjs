#!/usr/bin/env node
// `npm run bench:ceiling`: the round-robin primary's own ceiling — how many
// connections per second one SCHED_RR primary accepts and hands off when
// its workers acknowledge at once — for native-cluster and stock
// node:cluster in the same run, alternating which goes first, medians over
// rounds and native/stock ratios.
//
//   node bench/ceiling.mjs [--rounds N] [--duration S] [--workers N]
//                          [--concurrency N] [--threads N] [--serialization json|advanced]
//                          [--baseline DIR] [--out FILE]
//
// --baseline DIR adds a third column in the same rounds: native-cluster as
// built in another checkout (e.g. the commit before a change), with the
// ratio of this tree to it.
//
// No Node and no HTTP in the workers: both primaries fork the same Rust fake
// worker (examples/ceiling_worker.rs), which registers a round-robin TCP
// server with Node's own cluster messages and acknowledges every `newconn`
// at once. The load (examples/ceiling_load.rs) keeps --concurrency
// connections outstanding, each opened and waited on until the server side
// closes it (handed off, acknowledged, closed by worker and primary), and
// samples the primary's and the workers' CPU from /proc over exactly the
// measured window. What a core of the primary can feed is then
// connections / primary CPU seconds.

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { freePort } from './free_port.mjs';
import { markdownTable } from './markdown_table.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

function parseArgs(argv) {
  const o = { rounds: 5, duration: 5, warmup: 1, workers: 2, concurrency: 64, threads: 1,
    serialization: 'json', baseline: null, out: path.join(here, 'results', 'ceiling.jsonl') };
  const numeric = new Set(['rounds', 'duration', 'warmup', 'workers', 'concurrency', 'threads']);
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].replace(/^--/, '');
    if (name === 'help' || name === 'h' || !(name in o) || i + 1 >= argv.length) {
      console.error('usage: node bench/ceiling.mjs [--rounds N] [--duration S] [--workers N] ' +
        '[--concurrency N] [--threads N] [--serialization json|advanced] [--baseline DIR] [--out FILE]');
      process.exit(name === 'help' || name === 'h' ? 0 : 2);
    }
    const v = argv[++i];
    o[name] = numeric.has(name) ? Number(v) : name === 'out' || name === 'baseline' ? path.resolve(v) : v;
    if (numeric.has(name) && !(o[name] >= 1)) {
      console.error(`bench: --${name} must be >= 1`);
      process.exit(2);
    }
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));

// The fake worker and the load generator, built in release mode; cargo
// reports where it put them.
function buildTools() {
  process.stderr.write('building the fake worker and the load generator (cargo, release)…\n');
  const r = spawnSync('cargo', ['build', '--release', '--example', 'ceiling_worker', '--example',
    'ceiling_load', '--message-format=json-render-diagnostics'],
  { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`cargo build failed (exit ${r.status})`);
  const bins = {};
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const m = JSON.parse(line);
    if (m.reason === 'compiler-artifact' && m.executable) bins[m.target.name] = m.executable;
  }
  if (!bins.ceiling_worker || !bins.ceiling_load) throw new Error('cargo did not report the binaries');
  return bins;
}

async function runLoad(bin, port, seconds, pids) {
  const args = [String(port), String(seconds), '--threads', String(opts.threads),
    '--concurrency', String(opts.concurrency)];
  if (pids.length > 0) args.push('--pids', pids.join(','));
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const [code] = await once(child, 'exit');
  const line = out.split('\n').find((l) => l.startsWith('{'));
  if (code !== 0 || !line) throw new Error(`load generator failed (exit ${code}): ${out.slice(-300)}`);
  return JSON.parse(line);
}

// One primary: ready, warm-up, the measured window, exit.
async function measure(impl, bins) {
  const port = await freePort();
  const cfg = { impl: impl === 'baseline' ? 'native' : impl, workers: opts.workers, port,
    worker: bins.ceiling_worker, serialization: opts.serialization,
    root: impl === 'baseline' ? opts.baseline : undefined };
  const child = spawn(process.execPath, [path.join(here, 'ceiling_primary.cjs'), JSON.stringify(cfg)],
    { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = once(child, 'exit');
  const killer = setTimeout(() => child.kill('SIGKILL'), (opts.warmup + opts.duration + 60) * 1000);
  try {
    const lines = readline.createInterface({ input: child.stdout });
    let ready = null;
    for await (const line of lines) {
      if (!line.startsWith('@@bench ')) continue;
      ready = JSON.parse(line.slice(8));
      break;
    }
    if (!ready || ready.error) throw new Error(`primary: ${ready ? ready.error : 'exited before ready'}`);
    await runLoad(bins.ceiling_load, port, opts.warmup, []);
    const r = await runLoad(bins.ceiling_load, port, opts.duration, [ready.primary, ...ready.workers]);
    const cpu = r.user_s.map((u, i) => u + r.sys_s[i]);
    const [primaryCpu, ...workerCpu] = cpu;
    const workersCpu = workerCpu.reduce((a, b) => a + b, 0);
    child.stdin.write('exit\n');
    await exited;
    return {
      conns_per_s: r.connections / r.seconds,
      primary_cores: primaryCpu / r.seconds,
      primary_us_per_conn: (primaryCpu * 1e6) / r.connections,
      primary_user_us_per_conn: (r.user_s[0] * 1e6) / r.connections,
      conns_per_primary_core_s: r.connections / primaryCpu,
      workers_us_per_conn: (workersCpu * 1e6) / r.connections,
      errors: r.errors,
      connections: r.connections,
    };
  } finally {
    clearTimeout(killer);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

function median(values) {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return { median: v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2, min: v[0], max: v[v.length - 1] };
}

function fmt(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  const a = Math.abs(x);
  if (a >= 1e5) return `${(x / 1000).toFixed(0)}k`;
  if (a >= 1e4) return `${(x / 1000).toFixed(1)}k`;
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return a === 0 ? '0' : x.toPrecision(3);
}

const LABELS = {
  conns_per_s: 'connections/s',
  primary_cores: 'primary CPU (cores)',
  primary_us_per_conn: 'primary CPU µs/connection',
  primary_user_us_per_conn: '  of which user space',
  conns_per_primary_core_s: 'connections/s per primary core',
  workers_us_per_conn: 'fake workers CPU µs/connection',
  errors: 'connection errors',
};

const bins = buildTools();
fs.mkdirSync(path.dirname(opts.out), { recursive: true });
const out = fs.createWriteStream(opts.out);
const record = (obj) => out.write(`${JSON.stringify(obj)}\n`);
const git = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).stdout?.trim();
record({ type: 'run', ts: new Date().toISOString(), node: process.version, cpus: os.cpus().length, git, opts });

const impls = opts.baseline ? ['native', 'stock', 'baseline'] : ['native', 'stock'];
const samples = Object.fromEntries(impls.map((i) => [i, []]));
const t0 = Date.now();
let failures = 0;
for (let round = 0; round < opts.rounds; round++) {
  // Each implementation goes first in turn.
  const order = impls.map((_, i) => impls[(i + round) % impls.length]);
  for (const impl of order) {
    process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s] ${impl} round ${round + 1}/${opts.rounds}`);
    try {
      const m = await measure(impl, bins);
      samples[impl].push(m);
      record({ type: 'sample', impl, round, metrics: m });
      process.stderr.write(`  ${fmt(m.conns_per_s)} conn/s, ${fmt(m.primary_us_per_conn)} µs/conn\n`);
    } catch (err) {
      failures++;
      record({ type: 'failure', impl, round, error: err.message });
      process.stderr.write(`  FAILED: ${err.message}\n`);
    }
  }
}

const rows = [['metric', 'native median (min–max)', 'stock median (min–max)', 'native/stock']];
if (opts.baseline) rows[0].push('baseline median (min–max)', 'native/baseline');
const ratioOf = (a, b) => (a && b && b.median !== 0 ? a.median / b.median : null);
const cell = (x) => (x ? `${fmt(x.median)} (${fmt(x.min)}–${fmt(x.max)})` : '—');
const showRatio = (r) => (r === null ? '—' : `${r.toFixed(2)}×`);
for (const [metric, label] of Object.entries(LABELS)) {
  const [n, s, b] = ['native', 'stock', 'baseline'].map((i) => median((samples[i] ?? []).map((m) => m[metric])));
  const ratio = ratioOf(n, s);
  record({ type: 'summary', metric, native: n, stock: s, ratio, baseline: b, vs_baseline: ratioOf(n, b) });
  rows.push([label, cell(n), cell(s), showRatio(ratio)]);
  if (opts.baseline) rows[rows.length - 1].push(cell(b), showRatio(ratioOf(n, b)));
}
const header = `native-cluster ceiling bench — ${new Date().toISOString()} — node ${process.version}, ` +
  `${os.cpus().length} CPUs, git ${git}; ${opts.workers} fake workers (${opts.serialization}), ` +
  `${opts.concurrency} connections outstanding on ${opts.threads} load thread(s), ` +
  `${opts.duration}s windows (+${opts.warmup}s warm-up), ${opts.rounds} rounds` +
  (opts.baseline ? `; baseline: ${opts.baseline}` : '') + '; took ' +
  `${((Date.now() - t0) / 1000).toFixed(0)}s${failures ? `; ${failures} FAILED, see the JSONL` : ''}`;
const report = [header, '', ...markdownTable(rows), ''].join('\n');
process.stdout.write(`\n${report}`);
fs.writeFileSync(opts.out.replace(/\.jsonl$/, '') + '.txt', report);
out.end();
await once(out, 'finish');
process.exitCode = failures ? 1 : 0;
