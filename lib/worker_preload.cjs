'use strict';
// Preloaded into every worker the native primary starts, before any user
// code. It restores the worker's NODE_OPTIONS (so the preload is invisible
// and not inherited further) and holds messages from the primary until the
// worker's code listens for them: an ES module worker attaches its
// 'message' listener only after its imports load, and Node would deliver an
// earlier message to nobody.
//
// Node internals it touches, for want of a public API: `process.emit`
// (holding 'message'), `cluster._getServer` (which servers listen through
// the cluster, and from `_handle.fd` whether the worker accepts itself)
// and the `internalMessage` event (the primary's `disconnect` and our own
// requests). Checked with the project's tests on Node 20, 22, 24 and 26,
// and with Node's cluster suite on 20 and 24 (2026-12-08).

const saved = process.env.NATIVE_CLUSTER_NODE_OPTIONS;
if (saved !== undefined) {
  delete process.env.NATIVE_CLUSTER_NODE_OPTIONS;
  let original = null;
  try {
    original = JSON.parse(saved);
  } catch {
    // Not ours to interpret: leave NODE_OPTIONS without the preload.
  }
  if (original === null) delete process.env.NODE_OPTIONS;
  else process.env.NODE_OPTIONS = original;
}

const cluster = require('node:cluster');
if (cluster.isWorker && cluster.worker) holdUntilListened(cluster.worker);

function holdUntilListened(worker) {
  // The listener node:cluster itself put on `process` (it re-emits on the
  // worker object) is not a user listener.
  const builtin = new Set(process.listeners('message'));
  const held = [];
  const userListens = () =>
    worker.listenerCount('message') > 0 ||
    process.listeners('message').some((l) => !builtin.has(l));
  const emit = process.emit;
  process.emit = function emitHeld(event, ...args) {
    if (event === 'message' && (held.length > 0 || !userListens())) {
      held.push(args);
      if (userListens()) process.nextTick(flush);
      return true;
    }
    return emit.call(this, event, ...args);
  };
  function flush() {
    while (held.length > 0 && userListens()) emit.call(process, 'message', ...held.shift());
  }
  const onNewListener = (event) => {
    if (event === 'message' && held.length > 0) process.nextTick(flush);
  };
  process.on('newListener', onNewListener);
  worker.on('newListener', onNewListener);
}

// The servers this worker listens on through the cluster, for what the
// primary asks of them below.
const servers = new Set();
// What a server does once it listens (set by countSelfAccepted()).
let onListening = () => {};
if (cluster.isWorker) trackServers();

// One wrapper of cluster._getServer for both uses: the set above, and the
// connections counted by countSelfAccepted() below once a server listens.
function trackServers() {
  const getServer = cluster._getServer;
  cluster._getServer = function trackServer(obj, options, cb) {
    servers.add(obj);
    if (typeof obj.once === 'function') obj.once('close', () => servers.delete(obj));
    return getServer.call(this, obj, options, function listened(...args) {
      const result = cb.apply(this, args);
      if (!args[0]) onListening(obj);
      return result;
    });
  };
}

// A reload under SCHED_NONE or SCHED_REUSEPORT asks the worker it retires
// to stop accepting before it disconnects it (reload.js): the worker closes
// its copy of each listening socket (the primary holds one too) and goes
// on serving what it has accepted. A round-robin server's handle is the
// primary's and has no descriptor here; it is left alone.
if (cluster.isWorker) {
  process.on('internalMessage', (message) => {
    if (message === null || typeof message !== 'object' || message.cmd !== 'NODE_NATIVE_CLUSTER_STOP_ACCEPTING') return;
    for (const server of servers) {
      const handle = server._handle;
      if (handle && typeof handle.fd === 'number' && handle.fd >= 0) {
        handle.close();
        server._handle = null;
      }
    }
  });
}

// Disconnected by the primary (retired by a reload, or stopped): before
// Node's own handler closes the servers, their keep-alive connections are
// set to end after their next response instead of being cut while idle
// (keep_alive_retire.cjs). Ahead of Node's listener, which runs right after.
if (cluster.isWorker) {
  process.prependListener('internalMessage', (message) => {
    if (message === null || typeof message !== 'object' ||
        message.cmd !== 'NODE_CLUSTER' || message.act !== 'disconnect') return;
    require('./keep_alive_retire.cjs').retire(servers);
  });
}

// The watchdog's heartbeat (setupPrimary({ heartbeatTimeout })): sent from
// this event loop, so a worker that blocks it falls silent.
const beatMs = Number(process.env.NATIVE_CLUSTER_HEARTBEAT_MS);
delete process.env.NATIVE_CLUSTER_HEARTBEAT_MS;
if (cluster.isWorker && beatMs > 0) startHeartbeat(beatMs);

function startHeartbeat(every) {
  // Event-loop delay from Node's histogram (a timer every 10 ms; what it
  // records includes those 10 ms, taken off here), reported and reset with
  // each beat.
  const { monitorEventLoopDelay } = require('node:perf_hooks');
  const RESOLUTION = 10;
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION });
  histogram.enable();
  const ms = (ns) => Math.max(0, Math.round((Number(ns) || 0) / 1e4 - RESOLUTION * 100) / 100);
  const beat = () => {
    if (!process.connected) return;
    const mem = process.memoryUsage();
    process.send({
      cmd: 'NODE_NATIVE_CLUSTER_HEARTBEAT',
      p50: ms(histogram.percentile(50)),
      p99: ms(histogram.percentile(99)),
      max: ms(histogram.max),
      rss: mem.rss,
      heapUsed: mem.heapUsed,
      heapTotal: mem.heapTotal,
    });
    histogram.reset();
  };
  beat();
  setInterval(beat, every).unref();
}

// Connections the worker accepts itself (SCHED_NONE, SCHED_REUSEPORT: a
// listening handle with a descriptor; the primary hands it none and so
// cannot count them): counted here, the total reported to the primary's
// stats() at most every ACCEPTED_REPORT_MS (at once after a quiet spell).
if (cluster.isWorker) countSelfAccepted();

function countSelfAccepted() {
  const ACCEPTED_REPORT_MS = 200;
  let accepted = 0;
  let reportedAt = 0;
  let timer = null;
  const report = () => {
    timer = null;
    reportedAt = Date.now();
    if (process.connected) process.send({ cmd: 'NODE_NATIVE_CLUSTER_ACCEPTED', accepted }, () => {});
  };
  const count = () => {
    accepted++;
    if (timer !== null) return;
    const wait = reportedAt + ACCEPTED_REPORT_MS - Date.now();
    if (wait <= 0) return report();
    timer = setTimeout(report, wait);
    timer.unref();
  };
  // A handle with a descriptor accepts here (a round-robin one has none:
  // the primary accepts and counts). net.Server's public 'connection'
  // event then marks each connection it accepted.
  onListening = (obj) => {
    const handle = obj._handle;
    if (handle && handle.fd >= 0 && typeof obj.on === 'function') obj.on('connection', count);
  };
}
