// The documented example, run as a user would: every worker starts, every
// worker prints the primary's greeting, and all of them serve port 8000.
import test from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import os from 'node:os';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { untilRefusalsEnd } from './helpers.mjs';

const example = fileURLToPath(new URL('../examples/seed.mjs', import.meta.url));
const get = () => new Promise((resolve, reject) => {
  http.get({ host: '127.0.0.1', port: 8000, agent: false }, (res) => {
    let body = '';
    res.on('data', (d) => { body += d; });
    res.on('end', () => resolve(body));
  }).on('error', reject);
});

test('examples/seed.mjs: N workers start, each receives the greeting, all serve hello world', async () => {
  const n = os.availableParallelism();
  const child = spawn(process.execPath, [example], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const count = (re) => (out.match(re) || []).length;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out:\n${out}\n${err}`)), 20000);
    child.stdout.on('data', (d) => {
      out += d;
      if (count(/Worker received: {2}\{ msg: 'Hello worker' \}/g) === n && count(/Worker \d+ started/g) === n) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  assert.match(out, /^Primary \d+ is running$/m);
  assert.equal(count(/Primary forked worker: {2}\d+/g), n);
  await untilRefusalsEnd(get);
  for (let i = 0; i < 2 * n; i++) assert.equal(await get(), 'hello world\n');
  // The example never stops by itself: end the primary; its workers follow
  // when their channel closes.
  const pids = [...out.matchAll(/Worker (\d+) started/g)].map((m) => Number(m[1]));
  child.kill('SIGTERM');
  await new Promise((resolve) => child.on('exit', resolve));
  const deadline = Date.now() + 5000;
  const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(pids.filter(alive), []);
});
