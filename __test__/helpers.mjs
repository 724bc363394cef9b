// Runs fixture scripts as real Node processes, against native-cluster or
// stock node:cluster, and collects the JSON event lines they print.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { createRequire } from 'node:module';

export const here = path.dirname(fileURLToPath(import.meta.url));
export const fixture = (name) => path.join(here, 'fixtures', name);

// This platform's addon: its target (linux-x64-gnu, linux-arm64-musl, ...)
// and the file name `npm run build` gives it.
export const target = createRequire(import.meta.url)('../lib/native.js').target;
export const addonFile = `native-cluster.${target}.node`;
const escaped = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
export const addonFileRe = new RegExp(escaped(addonFile));

export function run(name, { impl = 'native', env = {}, args = [], timeout = 30000, onLine, node = process.execPath } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(node, [fixture(name), ...args], {
      env: { ...process.env, IMPL: impl, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let partial = '';
    const events = [];
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} (${impl}) timed out\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeout);
    child.stdout.on('data', (d) => {
      stdout += d;
      partial += d;
      let i;
      while ((i = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, i);
        partial = partial.slice(i + 1);
        if (line.startsWith('@@')) {
          const ev = JSON.parse(line.slice(2));
          events.push(ev);
        }
        if (onLine) onLine(line, child);
      }
    });
    child.stderr.on('data', (d) => { stderr += d; });
    // 'close', not 'exit': workers share the pipes and may still be writing
    // after the primary has gone.
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, events, pid: child.pid });
    });
  });
}

// Events logged by the primary, without the worker's own lines.
export const primaryEvents = (r) => r.events.filter((e) => e[0] === 'P').map((e) => e.slice(1));
export const workerEvents = (r) => r.events.filter((e) => e[0] === 'W').map((e) => e.slice(1));

// The seed example prints "Worker N started" right after calling listen(),
// before the primary has opened the port (as with node:cluster): retries
// `request` while the port refuses, for up to `ms`.
export async function untilRefusalsEnd(request, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await request();
    } catch (err) {
      if (err.code !== 'ECONNREFUSED' || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
