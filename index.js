'use strict';
// Entry: in the primary, the native cluster; in a worker, Node's own worker
// view (the worker half of the protocol is Node's runtime, by design).

// A cluster worker always has Node's IPC channel (or, started without a
// script, NODE_UNIQUE_ID still set); anywhere else node:cluster would be the
// primary view, so it is not loaded at all. In a worker Node's bootstrap has
// loaded it already.
const maybeWorker = 'NODE_UNIQUE_ID' in process.env || typeof process.send === 'function';
const nodeCluster = maybeWorker ? require('node:cluster') : { isWorker: false };

if (nodeCluster.isWorker) {
  // Our policy constants, so code shared by primary and workers can name
  // them: lib/policies.js's values, written here because loading a second
  // file costs every worker about 0.25 ms before it listens (startup.test
  // checks that they agree).
  if (nodeCluster.SCHED_REUSEPORT === undefined) nodeCluster.SCHED_REUSEPORT = 3;
  if (nodeCluster.SCHED_STICKY === undefined) nodeCluster.SCHED_STICKY = 4;
  // Loaded only when called, for the same reason.
  if (nodeCluster.availableParallelism === undefined) {
    nodeCluster.availableParallelism = function availableParallelism() {
      return require('./lib/parallelism.js').availableParallelism();
    };
  }
}

function primary() {
  const status = require('./lib/native.js').probe();
  return status.ok ? require('./lib/primary.js') : require('./lib/fallback.js').fallback(status.error);
}

module.exports = nodeCluster.isWorker ? nodeCluster : primary();

// The names an ES module can import (`import { fork } from 'native-cluster'`):
// Node's CommonJS export detection reads this line; it never runs. There is
// no index.mjs behind an `exports` map, because resolving any package through
// `exports` loads Node's ES resolver into a CommonJS program: about 1 ms more
// for `require('native-cluster')`, in the primary and in every worker.
0 && (module.exports = {
  SCHED_NONE, SCHED_RR, SCHED_REUSEPORT, SCHED_STICKY, Worker, availableParallelism, disconnect, fork, isMaster,
  isPrimary, isWorker, metrics, reload, schedulingPolicy, settings, stats, setupMaster, setupPrimary, watch, worker,
  workers,
});
