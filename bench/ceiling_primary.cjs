'use strict';
// The primary of the ceiling bench: `node ceiling_primary.cjs '<json config>'`.
//
// config.impl is 'native' (this package, or the checkout at config.root) or
// 'stock' (node:cluster); it forks
// config.workers fake workers (the Rust binary config.worker, see
// examples/ceiling_worker.rs) under SCHED_RR on config.port, prints
// `@@bench {"ready":true,"primary":pid,"workers":[pids]}` once all of them
// listen, and exits (after disconnecting them) when stdin says `exit` or
// closes.
//
// Both implementations start a worker as `process.execPath` with
// `[...execArgv, exec, ...args]` (stock through child_process.fork, ours in
// lib/primary.js), so pointing process.execPath at the fake worker and
// emptying execArgv makes either primary exec it instead of Node.

const path = require('node:path');
const readline = require('node:readline');

const cfg = JSON.parse(process.argv[2]);
const cluster = cfg.impl === 'native'
  ? require(cfg.root ?? path.resolve(__dirname, '..'))
  : require('node:cluster');

function emit(obj) {
  process.stdout.write(`@@bench ${JSON.stringify(obj)}\n`);
}

process.execPath = cfg.worker;
cluster.schedulingPolicy = cluster.SCHED_RR;
cluster.setupPrimary({ exec: 'ceiling', execArgv: [], serialization: cfg.serialization ?? 'json' });

let finishing = false;
const alive = new Set();
cluster.on('fork', (w) => alive.add(w));
cluster.on('exit', (w, code, signal) => {
  alive.delete(w);
  if (finishing) return;
  emit({ error: `fake worker ${w.id} exited early (code ${code}, signal ${signal})` });
  process.exit(1);
});

async function main() {
  const workers = [];
  let listening = 0;
  const ready = new Promise((resolve) => {
    cluster.on('listening', () => {
      if (++listening === cfg.workers) resolve();
    });
  });
  for (let i = 0; i < cfg.workers; i++) workers.push(cluster.fork({ CEILING_PORT: String(cfg.port) }));
  await ready;
  emit({ ready: true, primary: process.pid, workers: workers.map((w) => w.process.pid) });
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) if (line.trim() === 'exit') break;
  rl.close();
  finishing = true;
  const timer = setTimeout(() => {
    for (const w of alive) w.process.kill('SIGKILL');
    process.exit(0);
  }, 5000);
  cluster.disconnect(() => {
    clearTimeout(timer);
    process.exit(0);
  });
}

main().catch((err) => {
  emit({ error: String((err && err.stack) || err) });
  process.exit(1);
});
