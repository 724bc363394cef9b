'use strict';
// The hung-worker watchdog (setupPrimary({ heartbeatTimeout })). Every
// worker beats from its own event loop (the worker preload sends an
// internal message every heartbeatTimeout/4 ms, with its event-loop delay
// and memory); a worker silent for longer than the timeout is
// unresponsive: 'unresponsive' (worker, silentMs) on the worker and on
// cluster, and the primary hands it no new connections until it beats
// again ('responsive'). Stock node:cluster cannot tell a hung worker from
// a slow one.

const gate = require('./gate.js');

const BEAT = 'NODE_NATIVE_CLUSTER_HEARTBEAT';
const watched = new Map(); // worker -> state
let timer = null;
let tickMs = 100;
let lastTick = 0;
// Silence is counted from here at the earliest: while the primary's own
// JavaScript was blocked, beats waited in the I/O thread, undelivered.
let resumedAt = 0;

function beatInterval(timeout) {
  return Math.max(10, Math.floor(timeout / 4));
}

// The worker's environment entry that starts its beats.
function workerEnv(timeout) {
  return { NATIVE_CLUSTER_HEARTBEAT_MS: String(beatInterval(timeout)) };
}

function watch(cluster, worker, timeout) {
  const s = { timeout, since: 0, unresponsive: false, beat: null };
  watched.set(worker, s);
  const start = () => {
    if (s.since === 0) s.since = Date.now();
  };
  worker.once('online', start);
  worker.process.on('internalMessage', (message) => {
    if (message === null || typeof message !== 'object' || message.cmd !== BEAT) return;
    start();
    s.since = Date.now();
    s.beat = {
      at: s.since,
      eventLoopDelay: { p50: Number(message.p50) || 0, p99: Number(message.p99) || 0, max: Number(message.max) || 0 },
      rss: Number(message.rss) || 0,
      heapUsed: Number(message.heapUsed) || 0,
      heapTotal: Number(message.heapTotal) || 0,
    };
    if (s.unresponsive) {
      s.unresponsive = false;
      gate.open(worker, 'unresponsive');
      worker.emit('responsive');
      cluster.emit('responsive', worker);
    }
  });
  worker.once('exit', () => {
    watched.delete(worker);
    if (watched.size === 0 && timer !== null) {
      clearInterval(timer);
      timer = null;
    }
  });
  tickMs = Math.min(tickMs, Math.max(10, Math.floor(timeout / 5)));
  if (timer === null) {
    lastTick = Date.now();
    timer = setInterval(() => check(cluster), tickMs);
    timer.unref();
  }
}

function check(cluster) {
  const now = Date.now();
  if (now - lastTick > tickMs * 3) resumedAt = now;
  lastTick = now;
  for (const [worker, s] of watched) {
    if (s.since === 0 || s.unresponsive || !worker.isConnected()) continue;
    const silent = now - Math.max(s.since, resumedAt);
    if (silent <= s.timeout) continue;
    s.unresponsive = true;
    gate.close(worker, 'unresponsive');
    worker.emit('unresponsive', now - s.since);
    cluster.emit('unresponsive', worker, now - s.since);
  }
}

// The worker's last heartbeat ({ at, eventLoopDelay: { p50, p99, max } in
// ms since the beat before, rss, heapUsed, heapTotal }), or null.
function lastBeat(worker) {
  return watched.get(worker)?.beat || null;
}

function isUnresponsive(worker) {
  return watched.get(worker)?.unresponsive === true;
}

module.exports = { workerEnv, watch, lastBeat, isUnresponsive };
