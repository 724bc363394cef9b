'use strict';
// Scheduling policies: Node's two, with Node's values, and ours.
//   SCHED_REUSEPORT: each worker listens on its own SO_REUSEPORT socket and
//     the kernel balances; the primary takes no part in accepting.
//   SCHED_STICKY: the primary accepts, and every connection from one client
//     address goes to the same live worker.

const SCHED_NONE = 1;
const SCHED_RR = 2;
const SCHED_REUSEPORT = 3;
const SCHED_STICKY = 4;

const names = new Map([
  [SCHED_NONE, 'none'],
  [SCHED_RR, 'rr'],
  [SCHED_REUSEPORT, 'reuseport'],
  [SCHED_STICKY, 'sticky'],
]);

// NODE_CLUSTER_SCHED_POLICY, read as Node reads it: an unknown value means
// the default, round-robin.
function policyFromEnv(value) {
  for (const [policy, name] of names) {
    if (name === value) return policy;
  }
  return SCHED_RR;
}

// The name the native core knows a policy by; undefined if it is not one.
function policyName(policy) {
  return names.get(policy);
}

module.exports = {
  SCHED_NONE, SCHED_RR, SCHED_REUSEPORT, SCHED_STICKY, policyFromEnv, policyName,
};
