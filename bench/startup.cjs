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

require('./startup_report.cjs').report(cluster, impl, ms, 'require_ms', 'worker_require_ms');
