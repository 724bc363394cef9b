import cluster from './index.js';

export default cluster;
export const {
  SCHED_NONE,
  SCHED_RR,
  SCHED_REUSEPORT,
  SCHED_STICKY,
  Worker,
  disconnect,
  fork,
  isMaster,
  isPrimary,
  isWorker,
  metrics,
  reload,
  schedulingPolicy,
  settings,
  stats,
  setupMaster,
  setupPrimary,
  worker,
  workers,
} = cluster;
