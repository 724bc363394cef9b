// The native-cluster CLI's start and stop, on real processes and sockets:
// what it refuses before forking anything (bad options, a name or port
// taken, an unwritable pidfile), a signal during a long start-up, Ctrl-C
// (SIGINT to the whole process group) draining like SIGTERM, and an exit
// status that says whether requests were cut.
import test from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { alive, ask, command, fixtures, freePort, get, sleep, start } from './cli_harness.mjs';

const require = (await import('node:module')).createRequire(import.meta.url);
const { parseArgs } = require('../bin/cli/args.js');

// The status lines of a CLI that refused to start: exactly one, no stack.
function oneLine(err) {
  const lines = err.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, err);
  assert.doesNotMatch(err, /^\s+at /m, err);
  return lines[0];
}

test('-i takes at most 1024 workers, refused in one line as scale refuses', async () => {
  assert.throws(() => parseArgs(['-i', '99999', 'a.js']), /^Error: -i\/--instances takes 1 to 1024 workers, not "99999"$/);
  assert.throws(() => parseArgs(['-i1025', 'a.js']), /takes 1 to 1024 workers, not "1025"/);
  assert.equal(parseArgs(['-i', '1024', 'a.js']).instances, 1024);
  // A missing app: even before the fix, nothing is forked.
  const r = start(['-i', '99999', 'missing.js']);
  assert.deepEqual(await r.exited(), { code: 2, signal: null });
  assert.match(r.err, /^native-cluster: -i\/--instances takes 1 to 1024 workers, not "99999"\nRun native-cluster --help/);
});

test('a SIGTERM during a long start-up stops it: few workers forked, prompt exit, none left', async () => {
  const port = await freePort();
  const r = start(['-i', '64', 'slow_start.js'], { env: { PORT: port } });
  try {
    await r.waitFor(/starting 64 workers/);
    r.child.kill('SIGTERM');
    const t0 = Date.now();
    assert.deepEqual(await r.exited(), { code: 0, signal: null });
    const took = Date.now() - t0;
    const stopped = Number(r.err.match(/SIGTERM: stopping (\d+) worker/)[1]);
    assert.ok(stopped < 64, `the start-up went on: ${stopped} workers to stop\n${r.err}`);
    assert.ok(took < 4000, `${took} ms to stop ${stopped} workers`);
    assert.deepEqual(await r.left(), []);
    assert.doesNotMatch(r.err, /workers? (online|ready)/);
  } finally {
    await r.cleanup();
  }
});

test('a second instance with the same --name forks nothing and leaves the first one\'s pidfile alone', async () => {
  const port = await freePort();
  const runtime = mkdtempSync(path.join(os.tmpdir(), 'nc-twin-'));
  const env = { XDG_RUNTIME_DIR: runtime };
  const pidfile = path.join(runtime, 'api.pid');
  const a = start(['-i', '1', '--name', 'api', '--pidfile', pidfile, 'server.js'], { env: { PORT: port, ...env } });
  let b;
  try {
    await a.waitFor(/listening on/);
    assert.equal(readFileSync(pidfile, 'utf8'), `${a.child.pid}\n`);
    b = start(['-i', '4', '--name', 'api', '--pidfile', pidfile, 'server.js'], { env: { PORT: await freePort(), ...env } });
    assert.deepEqual(await b.exited(), { code: 1, signal: null });
    assert.match(oneLine(b.err), /^\[native-cluster\] a cluster named api is running \(.*api\.sock\)$/);
    assert.deepEqual(await b.left(), [], 'no worker of the second instance');
    assert.doesNotMatch(b.err, /EPIPE/);
    assert.equal(readFileSync(pidfile, 'utf8'), `${a.child.pid}\n`, 'the pidfile still names the first');
    assert.ok(existsSync(path.join(runtime, 'native-cluster', 'api.sock')));
    assert.ok(JSON.parse((await get(port)).body).pid);
    const status = await command(['status', '--name', 'api', '--json'], env);
    assert.equal(status.code, 0, status.stderr);
    assert.equal(JSON.parse(status.stdout).primary.pid, a.child.pid);
    assert.equal((await command(['stop', '--name', 'api'], env)).code, 0);
    assert.deepEqual(await a.exited(), { code: 0, signal: null });
    assert.equal(existsSync(pidfile), false);
  } finally {
    await a.cleanup();
    await b?.cleanup();
    rmSync(runtime, { recursive: true, force: true });
  }
});

test('--metrics that cannot listen fails the start in one line, exit 1, no worker left; malformed values are usage errors', async () => {
  const taken = net.createServer();
  await new Promise((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const busy = taken.address().port;
  const r = start(['-i', '2', '--metrics', String(busy), 'server.js'], { env: { PORT: await freePort() } });
  try {
    assert.deepEqual(await r.exited(), { code: 1, signal: null });
    assert.equal(oneLine(r.err), `[native-cluster] cannot serve --metrics on 127.0.0.1:${busy}: address in use (EADDRINUSE)`);
    assert.deepEqual(await r.left(), []);
  } finally {
    taken.close();
    await r.cleanup();
  }
  if (process.getuid() !== 0) {
    const p = start(['-i', '1', '--metrics', '80', 'server.js'], { env: { PORT: await freePort() } });
    assert.deepEqual(await p.exited(), { code: 1, signal: null });
    assert.match(oneLine(p.err), /cannot serve --metrics on 127\.0\.0\.1:80: permission denied \(EACCES\)/);
    await p.cleanup();
  }
  for (const value of ['host:80:90', '1.2.3.4:5:6', '::1:9100', '[nope]:9100', '0', '70000', 'host:', ':9100']) {
    assert.throws(() => parseArgs(['a.js', '--metrics', value]), new RegExp(`--metrics takes \\[host:\\]port.*not "${value.replace(/[[\]]/g, '\\$&')}"`), value);
  }
  assert.deepEqual(parseArgs(['a.js', '--metrics', '[::1]:9100']).metrics, { host: '::1', port: 9100 });
  assert.deepEqual(parseArgs(['a.js', '--metrics', 'localhost:9100']).metrics, { host: 'localhost', port: 9100 });
  const u = start(['--metrics', 'host:80:90', 'server.js']);
  assert.deepEqual(await u.exited(), { code: 2, signal: null });
  assert.match(u.err, /--metrics takes \[host:\]port/);
});

test('an unwritable --pidfile fails the start in one line, exit 1, no stack, no worker left', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nc-pid-'));
  try {
    for (const [pidfile, why] of [
      ['/nonexistent/dir/x.pid', 'no such file or directory (ENOENT)'],
      [dir, 'illegal operation on a directory (EISDIR)'],
    ]) {
      const r = start(['-i', '2', '--pidfile', pidfile, 'server.js'], { env: { PORT: await freePort() } });
      try {
        assert.deepEqual(await r.exited(), { code: 1, signal: null });
        assert.equal(oneLine(r.err), `[native-cluster] cannot write --pidfile ${pidfile}: ${why}`);
        assert.deepEqual(await r.left(), []);
      } finally {
        await r.cleanup();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Ctrl-C in a terminal: SIGINT to every process of the foreground process
// group. The CLI runs in a group of its own here, as under a shell.
async function ctrlC(extraArgs) {
  const port = await freePort();
  const r = start(['-i', '2', ...extraArgs, 'long_request.js'], { env: { PORT: port, REQUEST_MS: '2500' }, detached: true });
  await r.waitFor(/listening on/, 2);
  // A worker is answering once the response starts (its first half); a
  // request still in the backlog would prove nothing.
  let responding;
  const started = new Promise((resolve) => { responding = resolve; });
  const request = new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, agent: false }, (res) => {
      let length = 0;
      res.once('data', responding);
      res.on('data', (d) => { length += d.length; });
      res.on('end', () => resolve({ status: res.statusCode, length }));
      res.on('error', reject);
    }).on('error', reject);
  });
  request.catch(responding);
  await started;
  process.kill(-r.child.pid, 'SIGINT');
  return { r, request };
}

test('Ctrl-C (SIGINT to the process group) drains like SIGTERM: the request in flight completes, exit 0', async () => {
  const { r, request } = await ctrlC([]);
  try {
    assert.deepEqual(await request, { status: 200, length: 131072 }, 'the whole body');
    assert.deepEqual(await r.exited(), { code: 0, signal: null });
    assert.match(r.err, /SIGINT: stopping 2 workers/);
    assert.match(r.err, /all workers stopped; exiting$/m);
    assert.deepEqual(await r.left(), []);
  } finally {
    await r.cleanup();
  }
});

test('a stop whose --kill-timeout cuts a request exits 1 and says so', async () => {
  const { r, request } = await ctrlC(['--kill-timeout', '500']);
  try {
    await assert.rejects(request);
    assert.deepEqual(await r.exited(), { code: 1, signal: null });
    assert.match(r.err, /still running; SIGKILL/);
    assert.match(r.err, /all workers gone: 1 killed after --kill-timeout 500 ms \(requests in progress, if any, were cut\); exiting with code 1$/m);
    assert.doesNotMatch(r.err, /all workers stopped/);
    assert.deepEqual(await r.left(), []);
  } finally {
    await r.cleanup();
  }
});

test('workers in their own session still go when the CLI is killed with SIGKILL', async () => {
  const port = await freePort();
  const r = start(['-i', '2', 'server.js'], { env: { PORT: port } });
  try {
    await r.waitFor(/listening on/, 2);
    const workers = [...r.err.matchAll(/\(pid (\d+)\) listening/g)].map((m) => Number(m[1]));
    for (const pid of workers) {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      assert.deepEqual([Number(stat[2]), Number(stat[3])], [pid, pid], 'process group and session of its own');
    }
    r.child.kill('SIGKILL');
    await r.exit;
    assert.deepEqual(await r.left(8000), [], 'the workers exit when their channel closes');
    assert.deepEqual(workers.filter(alive), []);
  } finally {
    await r.cleanup();
  }
});

test('stop/status --name with an empty or missing value is a usage error, and stops nothing', async () => {
  const runtime = mkdtempSync(path.join(os.tmpdir(), 'nc-name-'));
  const env = { XDG_RUNTIME_DIR: runtime };
  const port = await freePort();
  const r = start(['-i', '1', '--name', 'only', 'server.js'], { env: { PORT: port, ...env } });
  try {
    await r.waitFor(/listening on/);
    await r.waitFor(/control socket/);
    for (const args of [['stop', '--name', ''], ['stop', '--name='], ['stop', '--name'], ['status', '--name', '']]) {
      const c = await command(args, env);
      assert.equal(c.code, 2, `${args.join(' ')}: ${c.stderr}`);
      assert.match(c.stderr, /^native-cluster: (--name takes letters, digits.*not ""|option --name needs a value)\n/, args.join(' '));
    }
    await sleep(300);
    assert.equal(r.child.exitCode, null, 'still running');
    assert.ok(JSON.parse((await get(port)).body).pid);
    assert.equal((await command(['stop', '--name', 'only'], env)).code, 0);
    assert.deepEqual(await r.exited(), { code: 0, signal: null });
  } finally {
    await r.cleanup();
    rmSync(runtime, { recursive: true, force: true });
  }
});

test('no "all workers online/ready" when every worker throws at start', async () => {
  const r = start(['-i', '2', '--max-restarts', '2', 'throw_start.js']);
  try {
    assert.equal((await r.exited()).code, 1);
    assert.match(r.err, /over --max-restarts 2/);
    assert.doesNotMatch(r.err, /all \d+ workers|ready/);
  } finally {
    await r.cleanup();
  }
});

test('after --max-restarts fires, the last line says why it exits 1, not "(some killed)"', async () => {
  const r = start(['-i', '2', '--max-restarts', '1', 'fail_start.js']);
  try {
    assert.deepEqual(await r.exited(), { code: 1, signal: null });
    // The other worker, failing at start too, may exit abnormally during
    // the stop: said, and nothing was killed.
    const lines = r.err.trim().split('\n');
    assert.match(lines.at(-1), /^\[native-cluster\] all workers (stopped|gone: 1 exited abnormally); exiting with code 1 \(too many restarts\)$/);
    assert.doesNotMatch(r.err, /killed/);
  } finally {
    await r.cleanup();
  }
});

test('--restart-window 0 is refused (it would turn --max-restarts off)', async () => {
  assert.throws(() => parseArgs(['a.js', '--max-restarts', '3', '--restart-window', '0']), /--restart-window takes 1 ms or more, not "0"/);
  const r = start(['--max-restarts', '3', '--restart-window', '0', 'server.js']);
  assert.deepEqual(await r.exited(), { code: 2, signal: null });
  assert.match(r.err, /--restart-window takes 1 ms or more/);
});

test('--max-memory below the app\'s baseline: its replacements count toward --max-restarts', async () => {
  const r = start(['-i', '1', '--max-memory', '1', '--max-restarts', '1', 'server.js'], { env: { PORT: await freePort() } });
  try {
    assert.deepEqual(await r.exited(30000), { code: 1, signal: null });
    assert.equal((r.err.match(/over --max-memory 1\); replacing it/g) || []).length, 1, r.err);
    assert.match(r.err, /uses \d+ MB \(over --max-memory 1\): 2 restarts within 60000 ms, over --max-restarts 1; stopping$/m);
    assert.deepEqual(await r.left(), []);
  } finally {
    await r.cleanup();
  }
});

test('--policy or --pidfile right before a missing app is a missing value, not the app', async () => {
  for (const flag of ['--policy', '--pidfile', '--name']) {
    assert.throws(() => parseArgs([flag, 'server.js']), new RegExp(`^Error: option ${flag} needs a value \\("server\\.js" is taken as its value, and no app is left\\)$`));
    const r = start(['-i', '1', flag, 'server.js']);
    assert.deepEqual(await r.exited(), { code: 2, signal: null });
    assert.match(r.err, new RegExp(`option ${flag} needs a value`));
  }
  // Nor may the pidfile be a script of the app's.
  assert.throws(() => parseArgs(['--pidfile', 'app.js', 'other.js']), /--pidfile takes the pidfile's path, not "app\.js"/);
  assert.equal(parseArgs(['--pidfile', 'app.pid', 'server.js']).pidfile, 'app.pid');
});

test('scale\'s refusal quotes what it was given: the string "3" is not 3', async () => {
  const runtime = mkdtempSync(path.join(os.tmpdir(), 'nc-scale-'));
  const r = start(['-i', '1', '--name', 's', 'server.js'], { env: { PORT: await freePort(), XDG_RUNTIME_DIR: runtime } });
  try {
    await r.waitFor(/control socket/);
    const sock = path.join(runtime, 'native-cluster', 's.sock');
    assert.deepEqual(await ask(sock, '{"cmd":"scale","workers":"3"}'), { ok: false, error: 'scale takes 1 to 1024 workers, not "3"' });
    assert.deepEqual(await ask(sock, '{"cmd":"scale","workers":2000}'), { ok: false, error: 'scale takes 1 to 1024 workers, not 2000' });
    r.child.kill('SIGTERM');
    assert.equal((await r.exited()).code, 0);
  } finally {
    await r.cleanup();
    rmSync(runtime, { recursive: true, force: true });
  }
});
