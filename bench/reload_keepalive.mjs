#!/usr/bin/env node
// Keep-alive clients across reloads, counted (not a test: it prints numbers
// and asserts nothing). Each run is __test__/fixtures/keepalive/reload.mjs:
// 2 workers, 2 reloads one after another, load from a separate process:
//
//   agent       4 clients, each an http.Agent({ keepAlive: true }), sending
//               back to back
//   agent-idle  8 such clients, each pausing 0..1000 ms between requests
//               (connections idle when their worker retires)
//   wrk         wrk -t1 -c4
//
//   node bench/reload_keepalive.mjs [--runs 10] [--only rr,none] [--clients agent,wrk] [--node /path/to/node]
//
// Prints, per policy and client kind, the failed requests of each run, the
// requests served, and the reloads' durations (median, max).

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = path.join(here, '..', '__test__', 'fixtures', 'keepalive', 'reload.mjs');

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
};
const runs = Number(opt('runs', '10'));
const policies = opt('only', 'rr,none,reuseport,sticky').split(',');
const clientKinds = opt('clients', 'agent,agent-idle,wrk').split(',');
const node = opt('node', process.execPath);
const CLIENTS = { agent: '4', 'agent-idle': '8', wrk: '4' };

function once(policy, client) {
  return new Promise((resolve, reject) => {
    const child = spawn(node, [fixture], {
      env: { ...process.env, IMPL: 'native', POLICY: policy, CLIENT: client, CLIENTS: CLIENTS[client], RELOADS: '2' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('close', () => {
      const line = out.split('\n').find((l) => l.startsWith('@@'));
      if (!line) return reject(new Error(`no result (${policy}, ${client}):\n${out}`));
      resolve(JSON.parse(line.slice(2))[2]);
    });
  });
}

const version = (await new Promise((resolve) => {
  const c = spawn(node, ['--version']);
  let v = '';
  c.stdout.on('data', (d) => { v += d; });
  c.on('close', () => resolve(v.trim()));
}));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`Node ${version}, ${runs} runs each, 2 workers, 2 reloads a run (${new Date().toISOString().slice(0, 10)})`);
console.log('| policy | client | failed per run | total failed | requests ok (median) | reload ms (median, max) |');
console.log('| --- | --- | --- | --- | --- | --- |');
for (const policy of policies) {
  for (const client of clientKinds) {
    const failed = [];
    const ok = [];
    const ms = [];
    const kinds = new Map();
    for (let i = 0; i < runs; i++) {
      const r = await once(policy, client);
      failed.push(r.load.failed.length);
      ok.push(r.load.ok);
      ms.push(...r.ms);
      for (const f of r.load.failed) kinds.set(f, (kinds.get(f) || 0) + 1);
    }
    const total = failed.reduce((a, b) => a + b, 0);
    const why = kinds.size ? ` (${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')})` : '';
    console.log(`| ${policy} | ${client} | ${failed.join(' ')} | ${total}${why} | ${median(ok)} | ${median(ms)}, ${Math.max(...ms)} |`);
  }
}
