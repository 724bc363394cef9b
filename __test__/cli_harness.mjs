// Running the native-cluster CLI from a test as a user runs it: start it,
// wait for its status lines, find every process it started (by a mark in
// their environment, which workers inherit), send it commands.
import http from 'node:http';
import net from 'node:net';
import { execFile, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
export const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
export const cli = path.join(root, pkg.bin['native-cluster']);
export const fixtures = path.join(here, 'fixtures', 'cli');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Running: neither gone nor a zombie (a worker whose primary died is
// reaped by init, whenever that gets to it).
export const alive = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1][0] !== 'Z';
  } catch {
    return false;
  }
};

export const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  }).on('error', reject);
});

// GET on 127.0.0.1: { status, body } (body a string).
export function get(port, urlPath = '/') {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', reject);
    }).on('error', reject);
  });
}

// Pids of the processes whose environment holds NC_TEST_MARK=mark.
export function marked(mark) {
  const needle = `\0NC_TEST_MARK=${mark}\0`;
  const pids = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (`\0${readFileSync(`/proc/${entry}/environ`, 'latin1')}`.includes(needle)) pids.push(Number(entry));
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return pids;
}

// Starts the CLI; `waitFor(re, n)` resolves once stderr matched re n
// times (within `timeout` ms unless told otherwise); `pids()` lists the
// pids its status lines named; `left()` lists the processes it started
// that still run.
export function start(args, { env = {}, cwd = fixtures, detached = false, timeout: waitTimeout = 15000 } = {}) {
  const mark = randomUUID();
  const child = spawn(process.execPath, [cli, ...args], {
    cwd,
    env: { ...process.env, ...env, NC_TEST_MARK: mark },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached,
  });
  const r = { child, mark, out: '', err: '', waiters: [] };
  const check = () => {
    r.waiters = r.waiters.filter((w) => {
      const n = (r.err.match(w.re) || []).length;
      if (n < w.count) return true;
      clearTimeout(w.timer);
      w.resolve();
      return false;
    });
  };
  child.stdout.on('data', (d) => { r.out += d; });
  child.stderr.on('data', (d) => { r.err += d; check(); });
  r.exit = new Promise((resolve) => child.on('exit', (code, signal) => {
    for (const w of r.waiters) w.reject(new Error(`CLI exited (${code ?? signal}) before ${w.re}:\n${r.err}`));
    resolve({ code, signal });
  }));
  // The exit, or a rejection after `timeout` ms.
  r.exited = (timeout = 15000) => Promise.race([r.exit, sleep(timeout).then(() => {
    throw new Error(`the CLI still runs after ${timeout} ms:\n${r.err}`);
  })]);
  r.waitFor = (re, count = 1, timeout = waitTimeout) => new Promise((resolve, reject) => {
    const global = new RegExp(re.source, re.flags.includes('g') ? re.flags : `${re.flags}g`);
    const w = { re: global, count, resolve, reject };
    w.timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} x${count}:\n${r.err}`)), timeout);
    r.waiters.push(w);
    check();
  });
  r.pids = () => [...new Set([...r.err.matchAll(/\(pid (\d+)\)/g)].map((m) => Number(m[1])))];
  // What it started that still runs, once given `grace` ms to go.
  r.left = async (grace = 5000) => {
    const deadline = Date.now() + grace;
    while (marked(mark).length > 0 && Date.now() < deadline) await sleep(50);
    return marked(mark);
  };
  r.cleanup = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await r.exit;
    }
    for (const pid of await r.left()) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  };
  return r;
}

// Runs a command of the CLI (status, stop...), killed after `timeout` ms
// (0: never): { code, stdout, stderr, ms }.
export function command(args, env = {}, { timeout = 20000 } = {}) {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env: { ...process.env, ...env }, timeout }, (error, stdout, stderr) =>
      resolve({ code: error ? error.code : 0, stdout, stderr, ms: Date.now() - t0 }));
  });
}

// One request line to a control socket, its reply parsed.
export function ask(file, line) {
  return new Promise((resolve, reject) => {
    const c = net.connect(file, () => c.write(`${line}\n`));
    let body = '';
    c.setEncoding('utf8');
    c.on('data', (d) => { body += d; });
    c.on('end', () => resolve(JSON.parse(body)));
    c.on('error', reject);
  });
}
