// Classic TypeScript (module: commonjs, esModuleInterop, each compiler's
// default resolution) and bundler resolution: default and named imports,
// import = require, and the preload imported for its effect.
import cluster from 'native-cluster';
import { fork, isPrimary, Worker, type ClusterSettings } from 'native-cluster';
import clusterRequired = require('native-cluster');
import 'native-cluster/register';

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
