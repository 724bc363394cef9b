import cluster from 'native-cluster'; // was: import cluster from 'node:cluster'
import http from 'node:http';
import { availableParallelism } from 'node:os';

if (cluster.isPrimary) {
  for (let i = 0; i < availableParallelism(); i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => console.log(`worker ${worker.process.pid} died`));
} else {
  http.createServer((req, res) => res.end(`hello from worker ${cluster.worker.id}\n`)).listen(8000);
}
