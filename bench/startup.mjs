// Start-up cost of the cluster module as an ES module app pays it:
// `node startup.mjs native|stock` times import('native-cluster') or
// import('node:cluster'), forks one worker running this same file, which
// times its own import, and prints both on one `@@bench` line.

const t0 = performance.now();
const impl = process.argv[2];
const { default: cluster } = await import(impl === 'native' ? 'native-cluster' : 'node:cluster');
const ms = performance.now() - t0;

const { report } = await import('./startup_report.cjs');
report(cluster, impl, ms, 'import_ms', 'worker_import_ms');
