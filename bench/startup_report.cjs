'use strict';
// The part of bench/startup.cjs and bench/startup.mjs after their timed
// load of the cluster module (so it costs neither of them anything): a
// worker sends its own figure; the primary forks one running the same
// script and prints both on one `@@bench` line, as `primaryKey` and
// `workerKey`.

function report(cluster, impl, ms, primaryKey, workerKey) {
  if (cluster.isWorker) {
    process.send({ ms });
    process.disconnect();
    return;
  }
  cluster.setupPrimary({ args: [impl] });
  const worker = cluster.fork();
  worker.on('message', (m) => {
    process.stdout.write(`@@bench ${JSON.stringify({ result: { [primaryKey]: ms, [workerKey]: m.ms } })}\n`);
  });
  worker.on('exit', (code, signal) => {
    if (code !== 0) {
      process.stdout.write(`@@bench ${JSON.stringify({ error: `worker exited (code ${code}, signal ${signal})` })}\n`);
    }
  });
}

module.exports = { report };
