'use strict';
// Whether the primary hands a worker new connections. Several reasons may
// close a worker's gate at once (it is draining before a reload retires it,
// it has not said it is ready, its heartbeat is late); it opens when the
// last reason goes. Honoured by the policies whose connections the primary
// accepts (SCHED_RR, SCHED_STICKY); elsewhere workers accept themselves.

const native = require('./native.js');

const reasons = new WeakMap();

function close(worker, reason) {
  let set = reasons.get(worker);
  if (set === undefined) reasons.set(worker, (set = new Set()));
  if (set.has(reason)) return;
  set.add(reason);
  if (set.size === 1 && !worker.isDead()) native.gate(worker.id, false);
}

function open(worker, reason) {
  const set = reasons.get(worker);
  if (set === undefined || !set.delete(reason)) return;
  if (set.size === 0 && !worker.isDead()) native.gate(worker.id, true);
}

module.exports = { close, open };
