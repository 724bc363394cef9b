// cluster.stats() and cluster.metrics() against ground truth, with real
// processes and HTTP load on 127.0.0.1: connections and messages as the
// workers counted them, RSS as /proc reports it, and the Prometheus text
// read by an independent parser (parse-prometheus-text-format).
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { run, primaryEvents } from './helpers.mjs';

const require = createRequire(import.meta.url);
const parsePrometheus = require('parse-prometheus-text-format');

let cached;
async function result() {
  if (cached) return cached;
  const r = await run('stats/stats.mjs', { timeout: 60000 });
  const res = primaryEvents(r).find((e) => e[0] === 'result');
  assert.ok(res, `no result\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  cached = res[1];
  return cached;
}

test('stats(): connections, messages and RSS match what the workers and /proc say', async (t) => {
  const res = await result();
  t.diagnostic(`stats() costs ${res.statsMicros.median.toFixed(0)} µs (median of 200; p90 ${res.statsMicros.p90.toFixed(0)} µs)`);
  for (const [stats, counts, rss] of [[res.stats1, res.counts1, res.rss1], [res.stats2, res.counts2, null]]) {
    assert.equal(stats.primary.policy, 'rr');
    assert.equal(stats.workers.length, 2);
    for (const w of stats.workers) {
      const own = counts.find((c) => c.id === w.id);
      assert.equal(w.connections.accepted, own.connections, JSON.stringify({ w, own }));
      assert.equal(w.connections.inFlight, 0);
      // The worker's count includes its answer to 'count', sent after.
      assert.equal(w.messages.received, own.sent - 1, JSON.stringify({ w, own }));
      assert.equal(w.state, 'listening');
      assert.ok(w.ready && !w.unresponsive);
      assert.ok(w.cpu.user + w.cpu.system > 0);
      assert.ok(w.heartbeat && w.heartbeat.sinceLastBeat < 1000, JSON.stringify(w.heartbeat));
      assert.ok(w.heartbeat.eventLoopDelay.max >= w.heartbeat.eventLoopDelay.p50);
      if (rss) assert.ok(Math.abs(w.rss - rss[w.id]) <= rss[w.id] * 0.1, `${w.rss} vs ${rss[w.id]}`);
    }
    assert.deepEqual(stats.workers.map((w) => w.slot).sort(), [0, 1]);
    assert.ok(stats.workers.reduce((n, w) => n + w.connections.accepted, 0) >= res.load1.ok);
  }
  // Between the two: the primary sent each worker one message ('count').
  for (const w of res.stats2.workers) assert.equal(w.messages.sent, 1);
});

test('metrics(): Prometheus text with one series per worker; counters only grow', async () => {
  const res = await result();
  const [first, second] = [parsePrometheus(res.metrics1), parsePrometheus(res.metrics2)];
  const byName = (families) => new Map(families.map((f) => [f.name, f]));
  const a = byName(first);
  const b = byName(second);
  for (const name of ['native_cluster_worker_connections_total', 'native_cluster_worker_messages_received_total',
    'native_cluster_worker_resident_memory_bytes', 'native_cluster_worker_up', 'native_cluster_worker_restarts_total']) {
    const f = a.get(name);
    assert.ok(f, `${name} missing`);
    assert.equal(f.metrics.length, 2, name);
    assert.deepEqual(new Set(f.metrics.map((m) => m.labels.worker)), new Set(res.stats1.workers.map((w) => String(w.id))));
  }
  assert.equal(a.get('native_cluster_worker_cpu_seconds_total').metrics.length, 4);
  for (const f of first.filter((x) => x.type === 'COUNTER')) {
    for (const m of f.metrics) {
      const later = b.get(f.name).metrics.find((x) => JSON.stringify(x.labels) === JSON.stringify(m.labels));
      assert.ok(later, `${f.name} ${JSON.stringify(m.labels)} gone`);
      assert.ok(Number(later.value) >= Number(m.value), `${f.name} went down`);
    }
  }
  const conns = (fams, id) => Number(fams.get('native_cluster_worker_connections_total').metrics
    .find((m) => m.labels.worker === String(id)).value);
  for (const w of res.stats1.workers) {
    assert.equal(conns(a, w.id), w.connections.accepted);
    assert.ok(conns(b, w.id) > conns(a, w.id));
  }
});
