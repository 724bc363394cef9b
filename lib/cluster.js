'use strict';
// Entry: in the primary, the native cluster; in a worker, Node's own worker
// view (the worker half of the protocol is Node's runtime, by design).

const nodeCluster = require('node:cluster');

if (nodeCluster.isWorker) {
  // Our policy constants, so code shared by primary and workers can name them.
  const { SCHED_REUSEPORT, SCHED_STICKY } = require('./policies.js');
  if (nodeCluster.SCHED_REUSEPORT === undefined) nodeCluster.SCHED_REUSEPORT = SCHED_REUSEPORT;
  if (nodeCluster.SCHED_STICKY === undefined) nodeCluster.SCHED_STICKY = SCHED_STICKY;
}

module.exports = nodeCluster.isWorker ? nodeCluster : require('./primary.js');
