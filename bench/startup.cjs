'use strict';
// Start-up cost of the cluster module as a CommonJS app pays it:
// `node startup.cjs native|stock` times require('native-cluster') (by name,
// resolved through package.json as an installed app resolves it) or
// require('node:cluster'), forks one worker running this same file, which
// times its own require, and prints both on one `@@bench` line.

const t0 = performance.now();
const impl = process.argv[2];
const cluster = require(impl === 'native' ? 'native-cluster' : 'node:cluster');
const ms = performance.now() - t0;

if (cluster.isWorker) {
  process.send({ ms });
  process.disconnect();
} else {
  cluster.setupPrimary({ args: [impl] });
  const worker = cluster.fork();
  worker.on('message', (m) => {
    process.stdout.write(`@@bench ${JSON.stringify({ result: { require_ms: ms, worker_require_ms: m.ms } })}\n`);
  });
  worker.on('exit', (code, signal) => {
    if (code !== 0) {
      process.stdout.write(`@@bench ${JSON.stringify({ error: `worker exited (code ${code}, signal ${signal})` })}\n`);
    }
  });
}
