import { createRequire } from 'node:module';

// Through require, not `import ... from './index.js'`: the same module
// instance without Node parsing the CommonJS files for export names.
const cluster = createRequire(import.meta.url)('./index.js');

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
