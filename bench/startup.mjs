// Start-up cost of the cluster module as an ES module app pays it:
// `node startup.mjs native|stock` times import('native-cluster') or
// import('node:cluster'), forks one worker running this same file, which
// times its own import, and prints both on one `@@bench` line.

const t0 = performance.now();
const impl = process.argv[2];
const { default: cluster } = await import(impl === 'native' ? 'native-cluster' : 'node:cluster');
const ms = performance.now() - t0;

if (cluster.isWorker) {
  process.send({ ms });
  process.disconnect();
} else {
  cluster.setupPrimary({ args: [impl] });
  const worker = cluster.fork();
  worker.on('message', (m) => {
    process.stdout.write(`@@bench ${JSON.stringify({ result: { import_ms: ms, worker_import_ms: m.ms } })}\n`);
  });
  worker.on('exit', (code, signal) => {
    if (code !== 0) {
      process.stdout.write(`@@bench ${JSON.stringify({ error: `worker exited (code ${code}, signal ${signal})` })}\n`);
    }
  });
}
