// Runs the seed example (examples/seed.mjs, or a copy of it beside an
// installed package) as a user would: N workers start, optionally each
// prints the primary's greeting, port 8000 answers "hello world", and when
// the primary is stopped its workers follow.
import assert from 'node:assert/strict';
import http from 'node:http';
import os from 'node:os';
import { spawn } from 'node:child_process';
import { untilRefusalsEnd } from './helpers.mjs';

export const get = () => new Promise((resolve, reject) => {
  http.get({ host: '127.0.0.1', port: 8000, agent: false }, (res) => {
    let body = '';
    res.on('data', (d) => { body += d; });
    res.on('end', () => resolve(body));
  }).on('error', reject);
});

const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };

export async function runSeedExample(script, { cwd, env = process.env, greeted = true, timeout = 20000 } = {}) {
  const n = os.availableParallelism();
  const child = spawn(process.execPath, [script], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const count = (re) => (out.match(re) || []).length;
  const ready = () => count(/Worker \d+ started/g) === n &&
    (!greeted || count(/Worker received: {2}\{ msg: 'Hello worker' \}/g) === n);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out:\n${out}\n${err}`)), timeout);
    child.stdout.on('data', (d) => {
      out += d;
      if (ready()) {
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
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(pids.filter(alive), []);
  return { out, err };
}
