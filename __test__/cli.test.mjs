// The native-cluster CLI, run as a user runs it, on real processes and
// sockets: an unmodified server script on N workers, crash restarts with
// backoff, graceful stop on SIGINT/SIGTERM (with a kill timeout), rolling
// reload on SIGHUP without a refused connection.
import test from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  cli, command as runCommand, fixtures, freePort, get as getBody, pkg, sleep, start as startCli,
} from './cli_harness.mjs';

// GET on 127.0.0.1: the JSON body.
const get = async (port, urlPath) => JSON.parse((await getBody(port, urlPath)).body);
const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };
const start = (args, options = {}) => startCli(args, { timeout: 10000, ...options });

test('bin: package.json names bin/native-cluster.js, an executable node script', () => {
  assert.deepEqual(pkg.bin, { 'native-cluster': 'bin/native-cluster.js' });
  assert.match(readFileSync(cli, 'utf8'), /^#!\/usr\/bin\/env node\n/);
  assert.ok(statSync(cli).mode & 0o111, 'executable');
});

test('--help explains options, crashes, signals and reload; usage errors exit 2', async () => {
  const help = start(['--help']);
  assert.deepEqual(await help.exit, { code: 0, signal: null });
  for (const word of ['Usage: native-cluster', '-i, --instances <N|max>', '--policy <rr|none|reuseport|sticky>', '--kill-timeout',
    '--listen-timeout', 'SIGINT, SIGTERM', 'SIGHUP', 'SIGKILL', 'restarted', 'back off', '--version']) {
    assert.ok(help.out.includes(word), `help mentions ${word}`);
  }
  const version = start(['--version']);
  assert.deepEqual(await version.exit, { code: 0, signal: null });
  assert.equal(version.out, `${pkg.version}\n`);
  for (const [args, re] of [
    [[], /no app given/],
    [["-i", "lots", "server.js"], /--instances takes a positive integer, max or 0/],
    [['--policy', 'fifo', 'server.js'], /--policy takes rr, none, reuseport, sticky, not "fifo"/],
    [['--frobnicate', 'server.js'], /unknown option --frobnicate/],
    [['missing.js'], /cannot find missing\.js/],
  ]) {
    const r = start(args);
    assert.deepEqual(await r.exit, { code: 2, signal: null }, args.join(' '));
    assert.match(r.err, re);
  }
});

test('-i 2 server.js args: both workers serve, the app gets its args; SIGTERM lets an in-flight request finish, exits 0', async () => {
  const port = await freePort();
  const r = start(['-i', '2', '--', 'server.js', '--flag', 'value'], { env: { PORT: port } });
  try {
    await r.waitFor(/listening on 127\.0\.0\.1:\d+/, 2);
    assert.match(r.err, /^\[native-cluster\] primary \d+: starting 2 workers of server\.js \(policy rr\)$/m);
    const seen = new Set();
    for (let i = 0; i < 10; i++) {
      const body = await get(port);
      assert.deepEqual(body.args, ['--flag', 'value']);
      assert.equal(body.sharedHandle, false, 'round-robin: the primary accepts');
      seen.add(body.pid);
    }
    assert.equal(seen.size, 2, 'round-robin over both workers');
    const workers = r.pids();
    const slow = get(port, '/slow');
    await sleep(150);
    r.child.kill('SIGTERM');
    const body = await slow; // finishes although the stop began meanwhile
    assert.ok(workers.includes(body.pid));
    assert.deepEqual(await r.exit, { code: 0, signal: null });
    assert.match(r.err, /SIGTERM: stopping 2 workers/);
    assert.match(r.err, /all workers stopped; exiting/);
    assert.deepEqual(workers.filter(alive), []);
    await assert.rejects(get(port), { code: 'ECONNREFUSED' });
  } finally {
    await r.cleanup();
  }
});

test('--policy none: workers accept from a shared socket; SIGINT stops them', async () => {
  const port = await freePort();
  const r = start(['--policy=none', '-i1', 'server.js'], { env: { PORT: port } });
  try {
    await r.waitFor(/listening on/);
    assert.match(r.err, /starting 1 worker of server\.js \(policy none\)/);
    assert.equal((await get(port)).sharedHandle, true);
    r.child.kill('SIGINT');
    assert.deepEqual(await r.exit, { code: 0, signal: null });
    assert.match(r.err, /SIGINT: stopping 1 worker/);
  } finally {
    await r.cleanup();
  }
});

test('an ES module written for node:cluster runs its worker branch under the CLI', async () => {
  const port = await freePort();
  const r = start(['-i', 'max', 'esm-server.mjs'], { env: { PORT: port } });
  try {
    await r.waitFor(/all \d+ workers ready|the worker is ready/);
    await r.waitFor(/listening on/, Number((r.err.match(/all (\d+) worker/) || [0, 1])[1]));
    const body = await get(port);
    assert.ok(r.pids().includes(body.pid));
    assert.equal(typeof body.worker, 'number');
    r.child.kill('SIGTERM');
    assert.equal((await r.exit).code, 0);
  } finally {
    await r.cleanup();
  }
});

test('a crashed worker is restarted; repeated crashes back off exponentially', async () => {
  const port = await freePort();
  const r = start(['-i', '1', 'server.js'], { env: { PORT: port } });
  try {
    await r.waitFor(/listening on/);
    const first = (await get(port)).pid;
    await assert.rejects(get(port, '/crash'));
    await r.waitFor(/crashed \(code 1\); restarting it$/m);
    await r.waitFor(/listening on/, 2);
    const second = (await get(port)).pid;
    assert.notEqual(second, first);
    assert.equal(alive(first), false);
    r.child.kill('SIGTERM');
    assert.equal((await r.exit).code, 0);
  } finally {
    await r.cleanup();
  }

  const c = start(['-i', '1', 'crash.js']);
  try {
    const times = [];
    c.child.stderr.on('data', (d) => { for (const _ of String(d).matchAll(/crashed/g)) times.push(Date.now()); });
    await c.waitFor(/restarting it in 800 ms \(crash 4 in a row\)/);
    assert.match(c.err, /crashed \(code 1\); restarting it\n/);
    assert.match(c.err, /restarting it in 200 ms \(crash 2 in a row\)/);
    assert.match(c.err, /restarting it in 400 ms \(crash 3 in a row\)/);
    // The gaps between crashes grow with the delays before the restarts.
    assert.ok(times[2] - times[1] >= 200, `${times}`);
    assert.ok(times[3] - times[2] >= 400, `${times}`);
    c.child.kill('SIGINT'); // during a backoff: no worker left, stop at once
    assert.deepEqual(await c.exit, { code: 0, signal: null });
  } finally {
    await c.cleanup();
  }
});

test('a worker that exits with code 0 on its own is not restarted; with none left the CLI exits 0', async () => {
  const r = start(['-i', '2', 'done.js']);
  try {
    assert.deepEqual(await r.exit, { code: 0, signal: null });
    assert.equal((r.err.match(/exited \(code 0\); not restarting it/g) || []).length, 2);
    assert.match(r.err, /no workers left; exiting/);
  } finally {
    await r.cleanup();
  }
});

test('SIGTERM: a worker that does not exit after its disconnect gets SIGKILL after --kill-timeout', async () => {
  const port = await freePort();
  const r = start(['-i', '2', '--kill-timeout', '300', 'stubborn.js'], { env: { PORT: port } });
  try {
    await r.waitFor(/listening on/, 2);
    const t0 = Date.now();
    r.child.kill('SIGTERM');
    assert.deepEqual(await r.exit, { code: 1, signal: null });
    const took = Date.now() - t0;
    assert.ok(took >= 300 && took < 3000, `${took} ms`);
    assert.equal((r.err.match(/still running; SIGKILL/g) || []).length, 2);
    assert.match(r.err, /all workers gone: 2 killed after --kill-timeout 300 ms \(requests in progress, if any, were cut\); exiting with code 1$/m);
  } finally {
    await r.cleanup();
  }
});

for (const policy of ['rr', 'none', 'reuseport', 'sticky']) test(`SIGHUP (policy ${policy}) replaces the workers one at a time under load, with no failed request`, async () => {
  const port = await freePort();
  const r = start(['-i', '2', '--policy', policy, 'server.js'], { env: { PORT: port } });
  try {
    await r.waitFor(/listening on/, 2);
    const before = r.pids();
    let stop = false;
    let ok = 0;
    const errors = [];
    const pidsSeen = new Set();
    const loop = async () => {
      while (!stop) {
        try {
          pidsSeen.add((await get(port)).pid);
          ok++;
        } catch (err) {
          errors.push(err.code || err.message);
        }
      }
    };
    const loops = Array.from({ length: 4 }, loop);
    while (ok < 20) await sleep(10);
    const atHup = ok;
    r.child.kill('SIGHUP');
    await r.waitFor(/reload done: 2 workers replaced/);
    const during = ok;
    assert.ok(during - atHup >= 20, `only ${during - atHup} requests during the reload`);
    await sleep(200);
    stop = true;
    await Promise.all(loops);
    assert.deepEqual(errors, [], `${errors.length} failed of ${ok + errors.length}`);
    assert.ok(ok > during, 'served after the reload');
    // Each new worker listened before its predecessor was told to go.
    const lines = r.err.split('\n');
    for (const m of r.err.matchAll(/worker (\d+) \(pid \d+\) replaces worker (\d+)/g)) {
      const listened = lines.findIndex((l) => l.includes(`worker ${m[1]} (`) && l.includes('listening on'));
      const replaced = lines.findIndex((l) => l.includes(m[0]));
      assert.ok(listened >= 0 && listened < replaced, m[0]);
    }
    assert.equal((r.err.match(/replaces worker/g) || []).length, 2);
    const after = r.pids().filter((p) => !before.includes(p));
    assert.equal(after.length, 2);
    assert.deepEqual(before.filter(alive), [], 'old workers are gone');
    for (let i = 0; i < 6; i++) assert.ok(after.includes((await get(port)).pid));
    r.child.kill('SIGTERM');
    assert.equal((await r.exit).code, 0);
  } finally {
    await r.cleanup();
  }
});

test('arguments: our options before or after the app, the app\'s after --; -i 0, max and -N', async () => {
  const { parseArgs } = await import('../bin/native-cluster.js');
  const cpus = (await import('../lib/parallelism.js')).default.availableParallelism();
  let o = parseArgs(['server.js', '-i', '2', '--policy', 'none', '--', '--port', '8080']);
  assert.deepEqual([o.app, o.instances, o.policy, o.args], ['server.js', 2, 'none', ['--port', '8080']]);
  o = parseArgs(['-i', '3', '--', 'server.js', '--port', '8080', '-i', '9']);
  assert.deepEqual([o.app, o.instances, o.args], ['server.js', 3, ['--port', '8080', '-i', '9']]);
  assert.equal(parseArgs(['-i', '0', 'a.js']).instances, cpus);
  assert.equal(parseArgs(['-i', 'max', 'a.js']).instances, cpus);
  assert.equal(parseArgs(['-i', '-1', 'a.js']).instances, Math.max(1, cpus - 1));
  assert.equal(parseArgs(['-i', '-64', 'a.js']).instances, 1);
  o = parseArgs(['a.js', '--max-restarts', '3', '--restart-window=5000', '--max-memory', '300', '--unresponsive-timeout', '2000']);
  assert.deepEqual([o.maxRestarts, o.restartWindow, o.maxMemory, o.unresponsiveTimeout], [3, 5000, 300, 2000]);
  assert.throws(() => parseArgs(['a.js', '--port', '8080']), /unknown option --port \(the app's own options go after --\)/);
  assert.throws(() => parseArgs(['a.js', '--max-restarts', 'x']), /--max-restarts takes a count, not "x"/);
});

test('--max-restarts 3: an app that fails at start stops the CLI with one line, exit 1, within the window', async () => {
  const t0 = Date.now();
  const r = start(['-i', '2', '--max-restarts', '3', '--restart-window', '10000', 'fail_start.js']);
  try {
    const { code } = await r.exit;
    assert.equal(code, 1, r.err);
    assert.ok(Date.now() - t0 < 10000, `${Date.now() - t0} ms`);
    const why = r.err.split('\n').filter((l) => l.includes('--max-restarts'));
    assert.equal(why.length, 1, r.err);
    assert.match(why[0], /crashed \(code 3\): 4 restarts within 10000 ms, over --max-restarts 3; stopping$/);
  } finally {
    await r.cleanup();
  }
});

test('--unresponsive-timeout: a worker that blocks its loop is replaced and killed; slots are kept', async () => {
  const port = await freePort();
  const r = start(['-i', '2', '--unresponsive-timeout', '500', 'server.js'], { env: { PORT: port } });
  try {
    await r.waitFor(/listening on/, 2);
    const slots = new Map();
    for (let i = 0; i < 4; i++) {
      const s = await get(port, '/slot');
      slots.set(s.pid, s.slot);
    }
    assert.deepEqual([...new Set(slots.values())].sort(), ['0', '1']);
    http.get({ host: '127.0.0.1', port, path: '/block', agent: false }).on('error', () => {});
    await r.waitFor(/unresponsive for \d+ ms; replacing it/, 1, 5000);
    await r.waitFor(/listening on/, 3);
    const blocked = [...slots.keys()].find((pid) => r.err.includes(`(pid ${pid}) unresponsive`));
    const deadline = Date.now() + 3000;
    while (alive(blocked) && Date.now() < deadline) await sleep(50);
    assert.equal(alive(blocked), false, 'the hung worker is killed');
    const now = new Map();
    for (let i = 0; i < 6; i++) {
      const s = await get(port, '/slot');
      now.set(s.pid, s.slot);
    }
    assert.ok(!now.has(blocked));
    assert.deepEqual([...new Set(now.values())].sort(), ['0', '1']);
    r.child.kill('SIGTERM');
    assert.equal((await r.exit).code, 0);
  } finally {
    await r.cleanup();
  }
});

test('--max-memory: a worker over the limit is replaced gracefully', async () => {
  const port = await freePort();
  // Every Node process is over 1 MB: the first worker is replaced ~2 s in.
  const r = start(['-i', '1', '--max-memory', '1', 'server.js'], { env: { PORT: port } });
  try {
    await r.waitFor(/listening on/);
    const first = (await get(port)).pid;
    await r.waitFor(/uses \d+ MB \(over --max-memory 1\); replacing it/, 1, 6000);
    await r.waitFor(/listening on/, 2);
    const deadline = Date.now() + 5000;
    while (alive(first) && Date.now() < deadline) await sleep(50);
    assert.equal(alive(first), false);
    assert.notEqual((await get(port)).pid, first);
  } finally {
    await r.cleanup();
  }
});

test('the CLI stops gracefully when the process that started it dies', async () => {
  const port = await freePort();
  const parent = spawn(process.execPath, [path.join(fixtures, 'parent.js'), '-i', '1', 'server.js'], {
    cwd: fixtures, env: { ...process.env, PORT: port }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  parent.stdout.on('data', (d) => { out += d; });
  parent.stderr.on('data', (d) => { err += d; });
  try {
    while (!/listening on/.test(err)) await sleep(50);
    const cli = Number(out.match(/cli (\d+)/)[1]);
    const worker = Number(err.match(/\(pid (\d+)\) listening/)[1]);
    parent.kill('SIGKILL');
    const deadline = Date.now() + 8000;
    while ((alive(cli) || alive(worker)) && Date.now() < deadline) await sleep(50);
    assert.equal(alive(cli), false, err);
    assert.equal(alive(worker), false, err);
  } finally {
    parent.kill('SIGKILL');
  }
});

const hasSocketActivate = (() => {
  try {
    return statSync('/usr/bin/systemd-socket-activate').isFile();
  } catch {
    return false;
  }
})();

// Listening TCP sockets on `port` in /proc/net/tcp: their inodes.
function listenersOn(port) {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length > 9 && f[3] === '0A' && f[1].endsWith(`:${hexPort}`))
    .map((f) => f[9]);
}

for (const policy of ['rr', 'none', 'reuseport']) {
  test(`socket activation (${policy}): the workers serve on the passed socket; the primary binds nothing`, { skip: !hasSocketActivate && 'systemd-socket-activate is not installed' }, async () => {
    const port = await freePort();
    const child = spawn('/usr/bin/systemd-socket-activate', ['-E', `PORT=${port}`, '-l', `127.0.0.1:${port}`,
      process.execPath, cli, '-i', '2', '--policy', policy, 'server.js'], { cwd: fixtures, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    try {
      // It starts the CLI on the first connection, which waits in the
      // socket's backlog until a worker serves it.
      while (!err.includes('Listening on')) {
        assert.equal(child.exitCode, null, err);
        await sleep(20);
      }
      const first = get(port);
      while ((err.match(/listening on/g) || []).length < 2) {
        assert.equal(child.exitCode, null, err);
        await sleep(50);
      }
      await first;
      const primary = Number(err.match(/primary (\d+):/)[1]);
      // The workers share one socket (under every policy: the passed one),
      // and the kernel may wake the same one several times in a row.
      const pids = new Set();
      for (let i = 0; i < 64 && pids.size < 2; i++) {
        const r = await get(port);
        pids.add(r.pid);
        assert.equal(r.sharedHandle, policy !== 'rr');
      }
      assert.equal(pids.size, 2, 'both workers serve');
      // One listening socket on the port: the one passed as descriptor 3.
      const inherited = readlinkSync(`/proc/${primary}/fd/3`).match(/socket:\[(\d+)\]/)?.[1];
      assert.deepEqual(listenersOn(port), [inherited], err);
      assert.ok(!err.includes('EADDRINUSE'), err);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.on('exit', r)));
    }
  });
}

// Runs a sub-command of the CLI, never killed.
const command = (args, env) => runCommand(args, env, { timeout: 0 });

test('control socket: status, reload under load, scale, garbage, another user, stop; --pidfile and --metrics', async () => {
  const port = await freePort();
  const metricsPort = await freePort();
  const runtime = mkdtempSync(path.join(os.tmpdir(), 'nc-runtime-'));
  const env = { XDG_RUNTIME_DIR: runtime };
  const pidfile = path.join(runtime, 'app.pid');
  const name = `t${process.pid}`;
  const r = start(['-i', '2', '--name', name, '--pidfile', pidfile, '--metrics', String(metricsPort), 'server.js'],
    { env: { PORT: port, ...env } });
  try {
    await r.waitFor(/listening on/, 2);
    await r.waitFor(/control socket/);
    assert.equal(readFileSync(pidfile, 'utf8'), `${r.child.pid}\n`);
    const sock = path.join(runtime, 'native-cluster', `${name}.sock`);
    assert.equal(statSync(sock).mode & 0o777, 0o600);

    let status = await command(['status', '--name', name, '--json'], env);
    assert.equal(status.code, 0, status.stderr);
    let s = JSON.parse(status.stdout);
    assert.equal(s.workers.length, 2);
    assert.deepEqual(s.workers.map((w) => w.slot).sort(), [0, 1]);
    const table = await command(['status'], env);
    assert.match(table.stdout, /id\s+pid\s+slot\s+state\s+uptime\s+restarts\s+cpu\s+memory\s+connections/);

    // A second cluster under the same name is refused.
    const twin = start(['-i', '1', '--name', name, 'server.js'], { env: { PORT: await freePort(), ...env } });
    assert.equal((await twin.exit).code, 1);
    assert.match(twin.err, /a cluster named .* is running/);

    // reload under load: no failed request, new pids.
    const before = s.workers.map((w) => w.pid);
    let stop = false;
    let ok = 0;
    const errors = [];
    const loop = async () => {
      while (!stop) {
        try { await get(port); ok++; } catch (err) { errors.push(err.code || err.message); }
      }
    };
    const loops = Array.from({ length: 4 }, loop);
    while (ok < 20) await sleep(10);
    const reload = await command(['reload', '--name', name], env);
    stop = true;
    await Promise.all(loops);
    assert.equal(reload.code, 0, reload.stderr);
    assert.match(reload.stdout, /2 workers replaced/);
    assert.deepEqual(errors, []);
    s = JSON.parse((await command(['status', '--json'], env)).stdout);
    assert.ok(s.workers.every((w) => !before.includes(w.pid)), JSON.stringify(s.workers));

    // Metrics over HTTP, with every worker.
    const text = await new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: metricsPort, path: '/metrics' }, (res) => {
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });
    assert.equal((text.match(/^native_cluster_worker_up\{/mg) || []).length, 2);

    // scale 3, then 1.
    assert.equal((await command(['scale', '3', '--name', name], env)).code, 0);
    await r.waitFor(/listening on/, 5);
    assert.equal(JSON.parse((await command(['status', '--json'], env)).stdout).workers.length, 3);
    assert.equal((await command(['scale', '1', '--name', name], env)).code, 0);
    let count = 3;
    for (let i = 0; i < 100 && count !== 1; i++) {
      await sleep(50);
      count = JSON.parse((await command(['status', '--json'], env)).stdout).workers.length;
    }
    assert.equal(count, 1);

    // Garbage gets an error reply; the cluster keeps serving.
    const garbage = await new Promise((resolve) => {
      const c = net.connect(sock, () => c.write('{"cmd": nope\n'));
      let body = '';
      c.on('data', (d) => { body += d; });
      c.on('end', () => resolve(body));
    });
    assert.deepEqual(JSON.parse(garbage), { ok: false, error: 'malformed request: not JSON' });
    assert.equal((await command(['scale', '0', '--name', name], env)).code, 1);
    assert.ok((await get(port)).pid);

    // Another user: the socket's mode refuses them; with the mode opened
    // up, the peer check does.
    const asNobody = (file) => new Promise((resolve) => {
      const child = spawn(process.execPath, ['-e', `
        const c = require('node:net').connect(${JSON.stringify(file)}, () => c.write('{"cmd":"stop"}\\n'));
        let b = ''; c.on('data', (d) => { b += d; }); c.on('end', () => console.log(b.trim()));
        c.on('error', (e) => console.log(e.code));`], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d) => { out += d; });
      child.on('close', () => resolve(out.trim()));
    });
    if (process.getuid() === 0) {
      assert.equal(await asNobody(sock), 'EACCES');
      chmodSync(runtime, 0o755);
      chmodSync(path.dirname(sock), 0o755);
      chmodSync(sock, 0o666);
      assert.deepEqual(JSON.parse(await asNobody(sock)), { ok: false, error: 'permission denied: another user' });
    }
    assert.ok((await get(port)).pid);

    const stopped = await command(['stop', '--name', name], env);
    assert.equal(stopped.code, 0);
    assert.equal((await r.exit).code, 0);
    assert.equal(existsSync(sock), false);
    assert.equal(existsSync(pidfile), false);
  } finally {
    await r.cleanup();
    rmSync(runtime, { recursive: true, force: true });
  }
});
