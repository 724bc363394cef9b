// TypeScript CommonJS usage (module: nodenext): import = require.
import cluster = require('native-cluster');
import { fork, isPrimary } from 'native-cluster';

if (cluster.isPrimary && isPrimary) {
  const worker: cluster.Worker = fork();
  const settings: cluster.ClusterSettings = cluster.settings;
  worker.on('online', () => worker.send({ settings }));
  cluster.on('fork', (w: cluster.Worker) => void w.id);
}
// @ts-expect-error a CommonJS require of the package is the cluster itself, without `default`
void cluster.default;
