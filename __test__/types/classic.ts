// Classic TypeScript (module: commonjs, esModuleInterop) and bundler
// resolution: default and named imports, and import = require.
import cluster from 'native-cluster';
import { fork, isPrimary, Worker, type ClusterSettings } from 'native-cluster';
import clusterRequired = require('native-cluster');

const settings: ClusterSettings = { exec: 'app.js' };
cluster.setupPrimary(settings);
if (isPrimary && clusterRequired.isPrimary) {
  const worker: Worker = fork();
  const same: clusterRequired.Worker = worker;
  worker.on('listening', (address) => console.log(address.address, address.port));
  void same;
}
// @ts-expect-error workers may be undefined (in a worker)
void cluster.workers[1];
