// The CLI's control socket and what it reports, with real CLI processes,
// workers and HTTP clients on 127.0.0.1: connections counted under every
// policy, a socket path too long for a Unix socket address, stale sockets
// of killed clusters, `stop` waiting for the exit, a reload cut short by a
// stop, what "restarts" counts, and the wording of replies.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { alive, command as runCommand, freePort, get as getBody, sleep, start as startCli } from './cli_harness.mjs';

const require = createRequire(import.meta.url);

// Exited: gone, or a zombie its parent has not reaped yet.
const exited = (pid) => !alive(pid);

// GET on 127.0.0.1: the body.
const get = async (port, urlPath) => (await getBody(port, urlPath)).body;
const start = (args, env) => startCli(args, { env });
// Runs a command of the CLI; resolves with its exit code, output and time.
const command = (args, env) => runCommand(args, env, { timeout: 60000 });

function runtimeDir(t) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nc-ctl-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function status(name, env) {
  const s = await command(['status', '--name', name, '--json'], env);
  assert.equal(s.code, 0, s.stderr);
  return JSON.parse(s.stdout);
}

for (const policy of ['rr', 'none', 'reuseport', 'sticky']) {
  test(`connections (policy ${policy}): status and native_cluster_worker_connections_total count every connection`, async (t) => {
    const env = { XDG_RUNTIME_DIR: runtimeDir(t), PORT: String(await freePort()) };
    const metricsPort = await freePort();
    const r = start(['-i', '2', '--policy', policy, '--name', 'conns', '--metrics', String(metricsPort), 'control_app.js'], env);
    try {
      await r.waitFor(/listening on/, 2);
      await r.waitFor(/control socket/);
      const N = 30;
      for (let i = 0; i < N; i++) await get(Number(env.PORT));
      // Where the workers accept themselves they report their count at
      // most every 200 ms.
      const total = (s) => s.workers.reduce((n, w) => n + w.connections.accepted, 0);
      let s = await status('conns', env);
      for (const deadline = Date.now() + 5000; total(s) < N && Date.now() < deadline;) {
        await sleep(100);
        s = await status('conns', env);
      }
      assert.equal(total(s), N, JSON.stringify(s.workers));
      const selfAccepting = policy === 'none' || policy === 'reuseport';
      for (const w of s.workers) assert.equal(w.connections.inFlight, selfAccepting ? null : 0);

      const table = (await command(['status', '--name', 'conns'], env)).stdout;
      const column = table.trim().split('\n').slice(2).map((l) => Number(l.trim().split(/\s+/).at(-1)));
      assert.equal(column.reduce((a, b) => a + b, 0), N, table);

      const text = await get(metricsPort, '/metrics');
      const series = (name) => [...text.matchAll(new RegExp(`^native_cluster_${name}\\{[^}]*\\} (\\S+)$`, 'mg'))].map((m) => Number(m[1]));
      assert.equal(series('worker_connections_total').reduce((a, b) => a + b, 0), N, text);
      assert.equal(series('worker_connections_in_flight').length, selfAccepting ? 0 : 2, text);
    } finally {
      await r.cleanup();
    }
  });
}

test('a control socket path over the sun_path limit: "path too long" in one line, exit 1, nothing created', async (t) => {
  const base = runtimeDir(t);
  // <runtime>/native-cluster/api.sock: 108 bytes and more.
  const runtime = path.join(base, 'r'.repeat(Math.max(1, 108 - Buffer.byteLength(base) - '/native-cluster/api.sock'.length)));
  mkdirSync(runtime);
  const env = { XDG_RUNTIME_DIR: runtime, PORT: String(await freePort()) };
  const r = start(['-i', '1', '--name', 'api', 'control_app.js'], env);
  try {
    assert.deepEqual(await r.exit, { code: 1, signal: null });
    const lines = r.err.split('\n').filter((l) => /path too long/.test(l));
    assert.equal(lines.length, 1, r.err);
    assert.match(lines[0], /control socket path too long: .*api\.sock is 10[89] bytes, at most 107/);
    assert.doesNotMatch(r.err, /ENOENT|chmod|\n {4}at /);
    assert.deepEqual(readdirSync(runtime), []);
    assert.deepEqual(readdirSync(base), [path.basename(runtime)]);

    const s = await command(['status', '--name', 'api'], env);
    assert.equal(s.code, 1);
    assert.equal(s.stderr.trim().split('\n').length, 1, s.stderr);
    assert.match(s.stderr, /control socket path too long/);
    assert.deepEqual(readdirSync(runtime), []);
  } finally {
    await r.cleanup();
  }
});

test('a killed cluster\'s socket is stale: status finds the live one, removes it, and a new cluster takes the name', async (t) => {
  const env = { XDG_RUNTIME_DIR: runtimeDir(t) };
  const dir = path.join(env.XDG_RUNTIME_DIR, 'native-cluster');
  const stale = start(['-i', '1', '--name', 'stale', 'control_app.js'], { ...env, PORT: String(await freePort()) });
  const api = start(['-i', '1', '--name', 'api', 'control_app.js'], { ...env, PORT: String(await freePort()) });
  let again;
  try {
    await stale.waitFor(/control socket/);
    await stale.waitFor(/listening on/);
    for (const pid of [stale.child.pid, ...stale.pids()]) process.kill(pid, 'SIGKILL');
    await stale.exit;
    assert.ok(existsSync(path.join(dir, 'stale.sock')), 'a SIGKILL leaves the socket file');
    await api.waitFor(/control socket/);

    const s = await command(['status'], env);
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /^api: control_app\.js, primary \d+/);
    assert.equal(existsSync(path.join(dir, 'stale.sock')), false, 'removed');

    const named = await command(['status', '--name', 'stale'], env);
    assert.equal(named.code, 1);
    assert.match(named.stderr, /no cluster named stale runs/);

    // A socket file left by a killed primary does not hold its name.
    const killed = start(['-i', '1', '--name', 'stale', 'control_app.js'], { ...env, PORT: String(await freePort()) });
    await killed.waitFor(/control socket/);
    await killed.waitFor(/listening on/);
    for (const pid of [killed.child.pid, ...killed.pids()]) process.kill(pid, 'SIGKILL');
    await killed.exit;
    await killed.cleanup();
    assert.ok(existsSync(path.join(dir, 'stale.sock')));
    again = start(['-i', '1', '--name', 'stale', 'control_app.js'], { ...env, PORT: String(await freePort()) });
    await again.waitFor(/control socket/);
    assert.equal((await command(['status', '--name', 'stale'], env)).code, 0);
    const both = await command(['status'], env);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /several clusters run \(api, stale\)/);
  } finally {
    await stale.cleanup();
    await api.cleanup();
    await again?.cleanup();
  }
});

test('stop returns once the primary has exited: a request in flight is finished first', async (t) => {
  const env = { XDG_RUNTIME_DIR: runtimeDir(t), PORT: String(await freePort()), SLOW_MS: '2000' };
  const r = start(['-i', '1', '--name', 'api', 'control_app.js'], env);
  try {
    await r.waitFor(/listening on/);
    await r.waitFor(/control socket/);
    const slow = get(Number(env.PORT), '/slow');
    await sleep(200);
    const stop = await command(['stop', '--name', 'api'], env);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal(stop.stdout, 'api: stopped\n');
    assert.ok(exited(r.child.pid), `the primary is still running after stop returned (${stop.ms} ms)`);
    assert.match(await slow, /"pid"/);
    assert.deepEqual(await r.exit, { code: 0, signal: null });
  } finally {
    await r.cleanup();
  }
});

test('stop gives up after --kill-timeout plus 5 s when the primary does not exit, and says so', async (t) => {
  const env = { XDG_RUNTIME_DIR: runtimeDir(t), PORT: String(await freePort()), SLOW_MS: '3000' };
  const r = start(['-i', '1', '--kill-timeout', '2000', '--name', 'api', 'control_app.js'], env);
  try {
    await r.waitFor(/listening on/);
    await r.waitFor(/control socket/);
    // The worker has a request to finish: the primary waits for it.
    get(Number(env.PORT), '/slow').catch(() => {});
    await sleep(200);
    const stopping = command(['stop', '--name', 'api'], env);
    // Frozen once it has taken the stop (and replied): it cannot exit.
    await r.waitFor(/control: stop: stopping/);
    process.kill(r.child.pid, 'SIGSTOP');
    const stop = await stopping;
    process.kill(r.child.pid, 'SIGCONT');
    assert.equal(stop.code, 1);
    assert.ok(stop.ms >= 7000, `${stop.ms} ms`);
    assert.match(stop.stderr, new RegExp(`^native-cluster: api: primary ${r.child.pid} still running 7000 ms after stop`));
    assert.equal(stop.stderr.trim().split('\n').length, 1);
    await r.exit;
  } finally {
    await r.cleanup();
  }
});

test('a reload cut short by stop says so', async (t) => {
  const env = { XDG_RUNTIME_DIR: runtimeDir(t), PORT: String(await freePort()) };
  env.MARKER = path.join(env.XDG_RUNTIME_DIR, 'marker');
  const r = start(['-i', '1', '--kill-timeout', '1000', '--name', 'api', 'control_app.js'], env);
  try {
    await r.waitFor(/listening on/);
    await r.waitFor(/control socket/);
    writeFileSync(env.MARKER, '5000'); // the replacement takes 5 s to listen
    const reloading = command(['reload', '--name', 'api'], env);
    await r.waitFor(/control: reload: replacing 1 worker/);
    const stop = await command(['stop', '--name', 'api'], env);
    assert.equal(stop.code, 0, stop.stderr);
    const reload = await reloading;
    assert.equal(reload.code, 1);
    assert.equal(reload.stderr, 'native-cluster: api: reload interrupted: the cluster is stopping\n');
    await r.exit;
  } finally {
    await r.cleanup();
  }
});

test('restarts count the slot\'s new workers: crash restarts and replacements, not a failed reload\'s candidate', async (t) => {
  const env = { XDG_RUNTIME_DIR: runtimeDir(t), PORT: String(await freePort()) };
  env.MARKER = path.join(env.XDG_RUNTIME_DIR, 'marker');
  const r = start(['-i', '1', '--name', 'api', 'control_app.js'], env);
  const restarts = async () => (await status('api', env)).workers.map((w) => w.restarts);
  try {
    await r.waitFor(/listening on/);
    await r.waitFor(/control socket/);
    assert.deepEqual(await restarts(), [0]);
    writeFileSync(env.MARKER, 'crash');
    const failed = await command(['reload', '--name', 'api'], env);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /exited \(code 3\) before it was ready/);
    assert.deepEqual(await restarts(), [0], 'the kept worker was not restarted');
    rmSync(env.MARKER);
    const reload = await command(['reload', '--name', 'api'], env);
    assert.equal(reload.code, 0, reload.stderr);
    assert.equal(reload.stdout, 'api: 1 worker replaced\n');
    assert.deepEqual(await restarts(), [1]);
    await get(Number(env.PORT), '/crash').catch(() => {});
    await r.waitFor(/listening on/, 3);
    assert.deepEqual(await restarts(), [2]);
    const table = await command(['status', '--name', 'api'], env);
    assert.match(table.stdout, /^api: control_app\.js, primary \d+ \(policy rr\), 1 worker\n/);
    const help = await command(['status', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout.replace(/\s+/g, ' '), /restarts: how many times the slot got a new worker \(crash restarts, reloads,.*not a reload's new worker that failed\)/);
  } finally {
    await r.cleanup();
  }
});

test('reload({ workers }) names what it takes: an array of Worker', async () => {
  const cluster = require('../');
  await assert.rejects(cluster.reload({ workers: 'all' }), {
    code: 'ERR_INVALID_ARG_TYPE',
    message: 'The "options.workers" property must be an array of Worker. Received type string (\'all\')',
  });
  await assert.rejects(cluster.reload({ workers: [1] }), {
    code: 'ERR_INVALID_ARG_TYPE',
    message: 'The "options.workers[0]" property must be an instance of Worker. Received type number (1)',
  });
});
