'use strict';
// Connections a worker accepted itself from a listening socket it holds
// (SCHED_NONE, SCHED_REUSEPORT), which the primary never sees: the worker
// preload counts them and reports its total (at most every 200 ms); this
// keeps each worker's last report for stats().

const REPORT = 'NODE_NATIVE_CLUSTER_ACCEPTED';
const counts = new WeakMap(); // worker -> total it last reported

function track(worker) {
  worker.process.on('internalMessage', (message) => {
    if (message === null || typeof message !== 'object' || message.cmd !== REPORT) return;
    const n = message.accepted;
    if (Number.isSafeInteger(n) && n >= (counts.get(worker) ?? 0)) counts.set(worker, n);
  });
}

// The worker's last reported total, 0 before its first report.
function of(worker) {
  return counts.get(worker) ?? 0;
}

module.exports = { track, of };
