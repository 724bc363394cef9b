// Reliability under failure, with real processes: connections of a worker
// that dies without answering, listenGrace, a flooding worker, send()
// back-pressure, nonsense queryServer messages, a kill/re-fork soak, and
// workers outliving a killed primary. Fixtures: __test__/fixtures/reliability/.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { run, primaryEvents, fixture } from './helpers.mjs';

async function result(name, opts) {
  const r = await run(`reliability/${name}`, opts);
  const res = primaryEvents(r).find((e) => e[0] === 'result');
  assert.ok(res, `${name} (${opts?.impl ?? 'native'}) logged no result\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return { ...r, res: res[1] };
}

// ---------------------------------------------------------------- (a)

test('(a) RR: the connection a busy worker never answered goes to the other worker when it is killed', async () => {
  const [native, stock] = await Promise.all([
    result('reroute.mjs', { impl: 'native', timeout: 15000 }),
    result('reroute.mjs', { impl: 'stock', timeout: 15000 }),
  ]);
  const n = native.res;
  // RR hands the busy worker exactly one connection; the other 9 were
  // served by the other worker before the kill.
  assert.equal(n.settledBeforeKill, 9, JSON.stringify(n));
  assert.equal(n.results.length, 10);
  for (const r of n.results) assert.deepEqual([r.status, r.body], [200, `worker ${n.survivor}`], JSON.stringify(n.results));
  // stats() and metrics() count it.
  assert.equal(n.rerouted, 1);
  assert.equal(n.metric, 'native_cluster_connections_rerouted_total 1');
  // Stock, the control: the connection handed to the dead worker stays
  // open in the primary (Node's RoundRobinHandle waits for a reply that
  // never comes and keeps the handle): its client hangs. Deterministic:
  // 9 served, exactly 1 still pending 2 s after the kill.
  const s = stock.res;
  assert.equal(s.settledBeforeKill, 9, JSON.stringify(s));
  assert.equal(s.results.filter((r) => r.pending).length, 1, JSON.stringify(s.results));
  assert.equal(s.results.filter((r) => r.status === 200).length, 9);
});

test('(a) STICKY: connections waiting for a busy owner go to the other worker when it is killed', async () => {
  const { res } = await result('reroute.mjs', { impl: 'native', env: { POLICY: 'sticky', WAIT_MS: '500' }, timeout: 15000 });
  // Every request is from 127.0.0.1, so all wait for its (stuck) owner:
  // one handed to it, nine queued.
  assert.equal(res.settledBeforeKill, 0, JSON.stringify(res));
  // Only the one handed to it counts as rerouted; the queued nine were
  // never handed out.
  assert.equal(res.rerouted, 1);
  for (const r of res.results) assert.deepEqual([r.status, r.body], [200, `worker ${res.survivor}`], JSON.stringify(res.results));
});

// ---------------------------------------------------------------- (b)

test('(b) listenGrace: killing every worker under load refuses nothing, and its timer is no thread; without it clients are refused', async (t) => {
  // All fork their replacements 300 ms after 'exit'; only the grace (and
  // the policy) differ.
  const [graced, sticky, bare] = await Promise.all([
    result('grace.mjs', { impl: 'native', env: { GRACE: '3000', REFORK_MS: '300' }, timeout: 30000 }),
    result('grace.mjs', { impl: 'native', env: { GRACE: '3000', REFORK_MS: '300', POLICY: 'sticky' }, timeout: 30000 }),
    result('grace.mjs', { impl: 'native', env: { GRACE: '0', REFORK_MS: '300' }, timeout: 30000 }),
  ]);
  const b = bare.res;
  for (const [name, run] of [['rr', graced], ['sticky', sticky]]) {
    const g = run.res;
    const info = JSON.stringify({ [name]: g, bare: b });
    t.diagnostic(`${name} grace 3000: ${g.refused} refused, ${g.failedInKilled} reset in the killed workers, ` +
      `${g.okAfterKill} ok after the kill (slowest ${g.maxMsAfterKill} ms)`);
    assert.equal(run.code, 0, run.stderr);
    // The replacements listened and served.
    assert.ok(Number.isFinite(g.relistenMs), info);
    assert.ok(g.servedByNew > 0, info);
    // Nothing refused, and every request started after the kill succeeded
    // (they waited in the backlog for the replacements).
    assert.equal(g.refused, 0, info);
    assert.equal(g.failedStartedAfter, 0, info);
    // The only failures: requests the dying workers had already received
    // (each worker logs the connections handed to it), which die with them
    // with or without a grace; at most one per client loop.
    assert.equal(g.failedUnreached, 0, info);
    assert.ok(g.failedInKilled <= 4, info);
    // The grace's timer, cancelled by the replacements, ran on the I/O
    // thread, as every timer does: no thread of its own.
    assert.equal(g.coreThreads, 1, info);
  }
  t.diagnostic(`rr grace 0:    ${b.refused} refused, ${b.failedStartedAfter} failed after the kill`);
  const info = JSON.stringify({ bare: b });
  // The control: the port closes with the last worker and stays closed
  // until a replacement listens, ≥ 300 ms later.
  assert.ok(b.refused >= 1, info);
  assert.ok(b.servedByNew > 0, info);
});

// ---------------------------------------------------------------- (c)

test('(c) a flooding worker while the primary is blocked: peak RSS like stock, all in order, RSS back after', async (t) => {
  const MB = 1024;
  // One after the other: the two floods would compete for the 2 cores.
  const native = await result('flood.mjs', { impl: 'native', timeout: 60000 });
  const stock = await result('flood.mjs', { impl: 'stock', timeout: 60000 });
  const n = native.res;
  const s = stock.res;
  const fig = (r) => `peak ${(r.hwmKB / MB).toFixed(1)} MB, start ${(r.rssStartKB / MB).toFixed(1)} MB, ` +
    `drained ${(r.rssDrainedKB / MB).toFixed(1)} MB, after GC ${(r.rssAfterKB / MB).toFixed(1)} MB, ${r.ms} ms`;
  t.diagnostic(`native: ${fig(n)}; RSS when the primary's JS unblocked ${(n.rssUnblockedKB / MB).toFixed(1)} MB`);
  t.diagnostic(`stock:  ${fig(s)}; RSS when the primary's JS unblocked ${(s.rssUnblockedKB / MB).toFixed(1)} MB`);
  const info = JSON.stringify({ native: n, stock: s });
  for (const r of [n, s]) {
    assert.equal(r.stalled, false, info);
    assert.equal(r.received, r.count, info);
    assert.equal(r.disorder, 0, info);
  }
  // Native pauses reading a worker above 4 MiB of message bytes waiting
  // for JavaScript; what those bytes cost in memory (one batch event per
  // read, often a few messages each) is what this bounds.
  assert.ok(n.hwmKB <= s.hwmKB + 16 * MB, `native peak ${n.hwmKB} kB > stock peak ${s.hwmKB} kB + 16 MB\n${info}`);
  // After the drain the primary keeps no more than stock does, give or
  // take 8 MB (both grow: Node 22's heap grows by about 10 MB here).
  const kept = (r) => r.rssAfterKB - r.rssStartKB;
  assert.ok(kept(n) <= Math.max(kept(s), 0) + 8 * MB,
    `native RSS ${n.rssStartKB} → ${n.rssAfterKB} kB, stock ${s.rssStartKB} → ${s.rssAfterKB} kB\n${info}`);
});

// ---------------------------------------------------------------- (d)

test('(d) worker.send() returns false past 128 KiB unwritten; every callback runs once, in order', async (t) => {
  const [native, stock] = await Promise.all([
    result('backpressure.mjs', { impl: 'native', timeout: 20000 }),
    result('backpressure.mjs', { impl: 'stock', timeout: 20000 }),
  ]);
  const order = Array.from({ length: 200 }, (_, i) => i);
  for (const r of [native.res, stock.res]) {
    const info = `${r.impl}: ${JSON.stringify({ ...r, returns: undefined })}`;
    const trues = r.returns.filter((x) => x).length;
    t.diagnostic(`${r.impl}: first false at send ${r.firstFalse}, ${r.falses} of 200 false ` +
      `(${trues - r.firstFalse} true after it), ${r.callsWhileBlocked} callbacks while the worker did not read`);
    // Sends 0..14 are 15 × ~8.2 KiB < 128 KiB: none of those can be false;
    // the 16th is over.
    assert.ok(r.firstFalse >= 15, info);
    // Once the kernel's socket buffer is full (the worker does not read),
    // nothing more is written: the last sends are all false. (Native can
    // return true again for a while after its first false: its I/O thread
    // keeps writing into the socket buffer until that is full, where stock
    // wrote synchronously up to it before its first false.)
    assert.ok(r.returns.slice(-100).every((x) => x === false), info);
    assert.ok(trues < 100, info);
    // A callback means written: while the worker does not read, only what
    // the kernel's socket buffer took (some, far from all).
    assert.ok(r.callsWhileBlocked > 0 && r.callsWhileBlocked < 100, info);
    assert.deepEqual(r.calls, order, info);
    assert.deepEqual(r.errors, [], info);
    assert.deepEqual(r.worker, { got: 200, inOrder: true, sizesOk: true }, info);
  }
  // Loosely like stock: as many sends accepted before the first false,
  // give or take the socket buffer (stock fills it before its first false;
  // native may not have written anything yet).
  assert.ok(Math.abs(native.res.firstFalse - stock.res.firstFalse) <= 40,
    `first false: native ${native.res.firstFalse}, stock ${stock.res.firstFalse}`);
});

// ---------------------------------------------------------------- (e)

test('(e) a queryServer with nonsense fields: EINVAL, ERR_CLUSTER_BAD_MESSAGE on that worker, nothing bound', async () => {
  const r = await result('bad_query.mjs', { impl: 'native', timeout: 20000 });
  assert.equal(r.code, 0, r.stderr);
  const { res } = r;
  const info = JSON.stringify(res, null, 1);
  const bad = res.reports.bad;
  const quiet = res.reports.quiet;
  // The fixture found the channel descriptor both ways.
  assert.deepEqual(bad.socketsAboveStdio, [bad.fd], info);
  // Every raw query was answered with EINVAL...
  const einval = Object.fromEntries([990, 991, 992, 993, 994, 995].map((s) => [s, 'EINVAL']));
  assert.deepEqual(bad.replies, einval, info);
  assert.deepEqual(quiet.replies, einval, info);
  // ...and so was the worker's own listen, whose server emitted the error.
  assert.deepEqual(bad.listenError, { code: 'EINVAL', syscall: 'bind' }, info);
  // One ERR_CLUSTER_BAD_MESSAGE per nonsense query on that worker (6 raw +
  // its listen), none on the good one; the quiet worker's went to warnings.
  assert.equal(res.errors.bad.length, 7, info);
  assert.ok(res.errors.bad.every((e) => e.code === 'ERR_CLUSTER_BAD_MESSAGE'), info);
  assert.deepEqual(res.errors.good, [], info);
  assert.equal(res.warnings.length, 6, info);
  assert.ok(res.warnings.every((w) => w.code === 'ERR_CLUSTER_BAD_MESSAGE'), info);
  // Nothing new listens in the primary; the good worker kept serving.
  assert.equal(res.before.length, 1, info);
  assert.deepEqual(res.after, res.before, info);
  assert.deepEqual(res.served.map((s) => [s.status, s.body]), Array(5).fill([200, 'good']), info);
  assert.equal(res.badState, 'online', info);
});

// ---------------------------------------------------------------- soak

test('soak: 2,000 requests over 20 kill/re-fork cycles leak no descriptors and no memory in the primary', async (t) => {
  const { res, code, stderr } = await result('soak.mjs', { impl: 'native', timeout: 60000 });
  assert.equal(code, 0, stderr);
  const info = JSON.stringify(res);
  t.diagnostic(`fds ${res.before.fds} → ${res.after.fds}, RSS ${(res.before.rssKB / 1024).toFixed(1)} → ${(res.after.rssKB / 1024).toFixed(1)} MB, ` +
    `${res.ok} ok, ${res.failures} failed, max ${Math.round(res.maxMs)} ms`);
  assert.equal(res.kills, 20, info);
  assert.ok(res.ok >= 2000, info);
  // A SIGKILLed worker takes with it what its JavaScript had (≤ 4 client
  // connections); what it had not answered went to the other worker: no
  // failed request had failed to reach a worker.
  assert.ok(res.failures <= res.kills * 4, info);
  assert.equal(res.failedUnreached, 0, info);
  assert.equal(res.live, 2, info);
  assert.equal(new Set(res.last).size, 2, info);
  assert.ok(Math.abs(res.after.fds - res.before.fds) <= 1, info);
  assert.ok(Math.abs(res.after.rssKB - res.before.rssKB) <= 16 * 1024, info);
});

// ---------------------------------------------------------------- no orphan

function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // A zombie has exited; it only waits for its new parent to reap it.
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function killPrimary(impl) {
  const child = spawn(process.execPath, [fixture('reliability/orphan.mjs')], {
    env: { ...process.env, IMPL: impl },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let buf = '';
  const pids = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('no pids')); }, 15000);
    child.stdout.on('data', (d) => {
      buf += d;
      const m = buf.match(/^@@(\["P","pids".*\])$/m);
      if (m) { clearTimeout(timer); resolve(JSON.parse(m[1])[2]); }
    });
  });
  assert.ok(pids.every(alive));
  child.kill('SIGKILL');
  const t0 = Date.now();
  while (pids.some(alive) && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 20));
  const left = pids.filter(alive);
  // Never leave them behind, whatever the outcome.
  for (const pid of left) try { process.kill(pid, 'SIGKILL'); } catch {}
  return { left, ms: Date.now() - t0 };
}

test('no orphan: SIGKILL the primary and its workers are gone within 2 s', async (t) => {
  const native = await killPrimary('native');
  const stock = await killPrimary('stock');
  t.diagnostic(`gone after: native ${native.ms} ms, stock ${stock.ms} ms`);
  assert.deepEqual(native.left, []);
  assert.deepEqual(stock.left, []);
});
