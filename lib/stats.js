'use strict';
// cluster.stats() and cluster.metrics(): what the primary knows of itself
// and of every live worker. Connections and messages are counted by the
// core as it handles them; CPU and memory come from /proc, read on the
// core's I/O thread; heartbeat figures (with heartbeatTimeout) from the
// workers' own event loops.

const native = require('./native.js');
const instances = require('./instances.js');
const readiness = require('./readiness.js');
const watchdog = require('./watchdog.js');
const selfAccepted = require('./self_accepted.js');
const { policyName, SCHED_NONE, SCHED_REUSEPORT } = require('./policies.js');

const STATS_TIMEOUT_MS = 1000;

function usage(u) {
  return u ? { cpu: { user: u.userMs, system: u.systemMs }, rss: u.rss } : { cpu: null, rss: null };
}

// `forkedAt`: worker -> Date.now() at its fork.
function stats(cluster, started, forkedAt) {
  const now = Date.now();
  const figures = started ? native.stats(STATS_TIMEOUT_MS, true) : { primary: null, workers: [] };
  const byId = new Map(figures.workers.map((w) => [w.id, w]));
  const mem = process.memoryUsage.rss();
  const cpu = process.cpuUsage();
  // Where the workers accept themselves, what they have accepted and not
  // answered is theirs to know: not counted.
  const acceptsItself = cluster.schedulingPolicy === SCHED_NONE || cluster.schedulingPolicy === SCHED_REUSEPORT;
  const workers = [];
  for (const worker of Object.values(cluster.workers || {})) {
    if (worker === undefined || worker.isDead()) continue;
    const f = byId.get(worker.id);
    const slot = instances.of(worker.id);
    const beat = watchdog.lastBeat(worker);
    workers.push({
      id: worker.id,
      pid: worker.process._osPid(),
      state: worker.state,
      slot: slot ?? null,
      uptime: now - (forkedAt.get(worker) ?? now),
      restarts: slot === undefined ? 0 : instances.restarts(slot),
      ready: readiness.isReady(worker),
      unresponsive: watchdog.isUnresponsive(worker),
      connections: {
        accepted: (f ? f.connections : 0) + selfAccepted.of(worker),
        inFlight: acceptsItself ? null : (f ? f.inFlight : 0),
      },
      messages: { received: f ? f.messagesIn : 0, sent: f ? f.messagesOut : 0 },
      ...usage(f?.usage),
      heartbeat: beat === null ? null : {
        sinceLastBeat: now - beat.at,
        eventLoopDelay: { ...beat.eventLoopDelay },
        heapUsed: beat.heapUsed,
        heapTotal: beat.heapTotal,
      },
    });
  }
  return {
    primary: {
      pid: process.pid,
      uptime: Math.round(process.uptime() * 1000),
      rss: mem,
      cpu: { user: Math.round(cpu.user / 1000), system: Math.round(cpu.system / 1000) },
      policy: policyName(cluster.schedulingPolicy),
      connections: { rerouted: figures.rerouted ?? 0 },
    },
    workers,
  };
}

// Prometheus text exposition (version 0.0.4) of stats().
function metrics(s, prefix = 'native_cluster') {
  const out = [];
  const esc = (v) => String(v).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
  const labels = (o) => `{${Object.entries(o).map(([k, v]) => `${k}="${esc(v)}"`).join(',')}}`;
  const family = (name, type, help, samples) => {
    out.push(`# HELP ${prefix}_${name} ${help}`, `# TYPE ${prefix}_${name} ${type}`);
    for (const [l, v] of samples) {
      if (v === null || v === undefined || Number.isNaN(v)) continue;
      out.push(`${prefix}_${name}${l ? labels(l) : ''} ${v}`);
    }
  };
  const p = s.primary;
  family('primary_uptime_seconds', 'gauge', 'Seconds since the primary started.', [[null, p.uptime / 1000]]);
  family('primary_resident_memory_bytes', 'gauge', 'Resident memory of the primary.', [[null, p.rss]]);
  family('primary_cpu_seconds_total', 'counter', 'CPU time of the primary.',
    [[{ mode: 'user' }, p.cpu.user / 1000], [{ mode: 'system' }, p.cpu.system / 1000]]);
  family('workers', 'gauge', 'Live workers.', [[null, s.workers.length]]);
  family('connections_rerouted_total', 'counter',
    'Connections handed to a worker that died before acknowledging them, handed to another worker instead.',
    [[null, p.connections.rerouted]]);
  const per = (fn) => s.workers.map((w) => [{ worker: w.id, pid: w.pid, slot: w.slot ?? '' }, fn(w)]);
  const perMode = (fn) => s.workers.flatMap((w) => ['user', 'system'].map((mode) =>
    [{ worker: w.id, pid: w.pid, slot: w.slot ?? '', mode }, fn(w, mode)]));
  family('worker_up', 'gauge', '1 while the worker is ready and responsive, else 0.',
    per((w) => (w.ready && !w.unresponsive ? 1 : 0)));
  family('worker_uptime_seconds', 'gauge', 'Seconds since the worker was forked.', per((w) => w.uptime / 1000));
  family('worker_restarts_total', 'counter', 'Times the worker\'s slot got a new worker: crash restarts and replacements (reload, watchdog).',
    per((w) => w.restarts));
  family('worker_connections_total', 'counter', 'Connections the worker accepted: handed to it by the primary, ' +
    'or (policies none and reuseport) taken from its listening socket, as it last reported.',
    per((w) => w.connections.accepted));
  family('worker_connections_in_flight', 'gauge', 'Connections the primary handed to the worker, not yet answered ' +
    '(not under policies none and reuseport).',
    per((w) => w.connections.inFlight));
  family('worker_messages_received_total', 'counter', 'Messages the worker sent to the primary.',
    per((w) => w.messages.received));
  family('worker_messages_sent_total', 'counter', 'Messages the primary sent to the worker.',
    per((w) => w.messages.sent));
  family('worker_cpu_seconds_total', 'counter', 'CPU time of the worker process.',
    perMode((w, mode) => (w.cpu ? w.cpu[mode] / 1000 : null)));
  family('worker_resident_memory_bytes', 'gauge', 'Resident memory of the worker process.', per((w) => w.rss));
  const beats = s.workers.filter((w) => w.heartbeat);
  if (beats.length > 0) {
    family('worker_event_loop_delay_seconds', 'gauge', 'Event-loop delay since the heartbeat before (p50, p99, max).',
      beats.flatMap((w) => ['p50', 'p99', 'max'].map((q) =>
        [{ worker: w.id, pid: w.pid, slot: w.slot ?? '', quantile: { p50: '0.5', p99: '0.99', max: '1' }[q] },
          w.heartbeat.eventLoopDelay[q] / 1000])));
    family('worker_heartbeat_age_seconds', 'gauge', 'Seconds since the worker\'s last heartbeat.',
      beats.map((w) => [{ worker: w.id, pid: w.pid, slot: w.slot ?? '' }, w.heartbeat.sinceLastBeat / 1000]));
  }
  return `${out.join('\n')}\n`;
}

module.exports = { stats, metrics };
