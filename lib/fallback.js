'use strict';
// Where the addon cannot load (another OS, a platform without a binary),
// the package is Node's own node:cluster, after one warning naming the
// platform and the reason, so one code base runs on a laptop and in
// production. NATIVE_CLUSTER_REQUIRE_NATIVE=1 makes it an error instead.
// Our policies need the native primary: choosing one here throws a clear
// error at setupPrimary()/fork() rather than Node's bare assertion.

const nodeCluster = require('node:cluster');
const { SCHED_REUSEPORT, SCHED_STICKY } = require('./policies.js');
const { makeError } = require('./errors.js');

function ours(cluster) {
  const env = process.env.NODE_CLUSTER_SCHED_POLICY;
  if (cluster.schedulingPolicy === SCHED_REUSEPORT || env === 'reuseport') return 'SCHED_REUSEPORT';
  if (cluster.schedulingPolicy === SCHED_STICKY || env === 'sticky') return 'SCHED_STICKY';
  return null;
}

function fallback(error) {
  if (process.env.NATIVE_CLUSTER_REQUIRE_NATIVE === '1') throw error;
  process.emitWarning(`using node:cluster instead: ${error.message}`, { code: 'NATIVE_CLUSTER_FALLBACK' });
  if (nodeCluster.SCHED_REUSEPORT === undefined) nodeCluster.SCHED_REUSEPORT = SCHED_REUSEPORT;
  if (nodeCluster.SCHED_STICKY === undefined) nodeCluster.SCHED_STICKY = SCHED_STICKY;
  if (nodeCluster.availableParallelism === undefined) {
    nodeCluster.availableParallelism = require('./parallelism.js').availableParallelism;
  }
  for (const method of ['setupPrimary', 'setupMaster', 'fork']) {
    const original = nodeCluster[method];
    nodeCluster[method] = function checked(...args) {
      const policy = ours(nodeCluster);
      if (policy !== null) {
        throw makeError(Error, 'ERR_NATIVE_CLUSTER_UNAVAILABLE', `cluster.${policy} needs native-cluster's addon, ` +
          `which is not available here (${error.message})`);
      }
      return original.apply(this, args);
    };
  }
  nodeCluster.nativeClusterFallback = error;
  return nodeCluster;
}

module.exports = { fallback };
