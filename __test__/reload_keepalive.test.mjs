// Keep-alive clients across a reload, with real processes on 127.0.0.1: a
// retired worker answers the requests that reach it after its disconnect
// with `Connection: close` and cuts no idle keep-alive connection, so Node's
// keep-alive agent and wrk see no reset under any policy, over http and
// https, through cluster.reload(), worker.disconnect() (the CLI's graceful
// stop) and the CLI's SIGHUP. Fixtures: __test__/fixtures/keepalive/.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { run, primaryEvents, here } from './helpers.mjs';

const hasWrk = !spawnSync('wrk', ['--version']).error;

async function result(name, env) {
  const r = await run(`keepalive/${name}`, { timeout: 60000, env });
  const res = primaryEvents(r).find((e) => e[0] === 'result');
  assert.ok(res, `${name} logged no result\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return res[1];
}

function assertNoFailure(res) {
  const info = JSON.stringify(res);
  assert.deepEqual(res.replaced, [2, 2], info);
  assert.ok(res.load, info);
  assert.deepEqual(res.load.failed, [], `${res.load.failed.length} failed of ${res.load.ok + res.load.failed.length}: ${info}`);
  assert.ok(res.load.ok > 100, info);
}

for (const policy of ['rr', 'none', 'reuseport', 'sticky']) {
  for (const client of ['agent', 'wrk']) {
    const skip = client === 'wrk' && !hasWrk && 'wrk is not installed (apt-get install -y wrk)';
    test(`two reloads under 4 keep-alive clients (${policy}, ${client}): no failed request`, { skip }, async (t) => {
      const res = await result('reload.mjs', { POLICY: policy, CLIENT: client, CLIENTS: '4', RELOADS: '2' });
      t.diagnostic(`${policy}/${client}: ${res.load.ok} ok, reloads took ${res.ms.join(', ')} ms`);
      assertNoFailure(res);
    });
  }
}

test('two reloads under 4 keep-alive https clients (rr): no failed request', async (t) => {
  const res = await result('reload.mjs', { POLICY: 'rr', CLIENT: 'agent', TLS: '1' });
  t.diagnostic(`https: ${res.load.ok} ok`);
  assertNoFailure(res);
});

// The old worker's server is closed by Node's disconnect handling; 200 ms
// later the client reuses its idle connection.
const KA_MS = 2000;
for (const [action, policy] of [['reload', 'rr'], ['reload', 'none'], ['disconnect', 'rr']]) {
  test(`${action} (${policy}): an idle keep-alive connection is not cut; its next request is answered with Connection: close`, async () => {
    const res = await result('idle.mjs', { ACTION: action, POLICY: policy, KA_MS: String(KA_MS) });
    const info = JSON.stringify(res);
    assert.equal(res.first.pid, res.oldPid, info);
    assert.equal(res.socketOpenBefore, true, info);
    assert.deepEqual({ ...res.next, keepAlive: undefined },
      { status: 200, pid: res.oldPid, connection: 'close', reused: true, keepAlive: undefined }, info);
    assert.ok(res.firstSocketClosedAfterNext < 1000, `closed after its response: ${info}`);
    // The other one is closed by the server's own keep-alive timer (Node
    // adds a buffer to keepAliveTimeout), and the worker exits by itself
    // once it is.
    assert.ok(res.idleClosedAfterMs >= KA_MS, info);
    assert.deepEqual({ code: res.exit.code, signal: res.exit.signal }, { code: 0, signal: null }, info);
    assert.ok(res.exit.afterRetireMs < 15000, info);
  });
}

test('CLI: SIGHUP twice under 4 keep-alive clients: no failed request', async () => {
  const port = await new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port: p } = s.address();
      s.close(() => resolve(p));
    }).on('error', reject);
  });
  const pkg = JSON.parse(readFileSync(path.join(here, '..', 'package.json'), 'utf8'));
  const cli = spawn(process.execPath, [path.join(here, '..', pkg.bin['native-cluster']), '-i', '2', 'server.js'], {
    cwd: path.join(here, 'fixtures', 'cli'),
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const waiters = [];
  cli.stderr.on('data', (d) => {
    err += d;
    for (const w of waiters.splice(0)) if (!w()) waiters.push(w);
  });
  const waitFor = (re, count) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re}:\n${err}`)), 30000);
    const check = () => {
      if ((err.match(new RegExp(re.source, 'g')) || []).length < count) return false;
      clearTimeout(timer);
      resolve();
      return true;
    };
    if (!check()) waiters.push(check);
  });
  const exited = new Promise((r) => cli.on('exit', r));
  let load;
  try {
    await waitFor(/listening on/, 2);
    load = spawn(process.execPath, [path.join(here, 'fixtures', 'keepalive', 'agent_load.mjs'), String(port), '4'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    load.stdout.on('data', (d) => { out += d; });
    for (const n of [1, 2]) {
      await new Promise((r) => setTimeout(r, 300));
      cli.kill('SIGHUP');
      await waitFor(/reload done: 2 workers replaced/, n);
    }
    await new Promise((r) => setTimeout(r, 300));
    load.stdin.end();
    await new Promise((r) => load.on('close', r));
    const seen = JSON.parse(out);
    assert.deepEqual(seen.failed, [], `${seen.failed.length} failed of ${seen.ok + seen.failed.length}`);
    assert.ok(seen.ok > 100, out);
    cli.kill('SIGTERM');
    assert.equal(await exited, 0, err);
  } finally {
    if (load && load.exitCode === null) load.kill('SIGKILL');
    if (cli.exitCode === null && cli.signalCode === null) {
      cli.kill('SIGKILL');
      await exited;
    }
  }
});
