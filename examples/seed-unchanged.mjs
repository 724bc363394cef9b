// Import the cluster module
import cluster from 'node:cluster';
import http from 'node:http';
// Get the number of available CPUs
import { availableParallelism } from 'node:os';
const numCPUs = availableParallelism();

// Check if the current process is the primary process
if (cluster.isPrimary) {
  // Log the primary process ID
  console.log(`Primary ${process.pid} is running`);

  // Fork workers for each CPU
  for (let i = 0; i < numCPUs; i++) {
    cluster.fork();
  }

  // Communication to Workers
  cluster.on('fork', (worker) => {
    console.log('Primary forked worker: ', worker.id);
    worker.send({msg: 'Hello worker'});
  });

  // Listen for exit events from workers
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.process.pid} died`);
  });
} else {
  // Create an HTTP server in each worker process
  http.createServer((req, res) => {
    res.writeHead(200);
    res.end('hello world\n');
  }).listen(8000);

  // Log the worker process ID
  console.log(`Worker ${process.pid} started`);

  // Communication to Primary
  process.on('message', (msg) => {
    console.log('Worker received: ', msg);
  });

}
