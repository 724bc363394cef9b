'use strict';
// The busy primary's duty cycle in a separate, unrelated process:
// `node hog.cjs <busyMs> <periodMs> <lifetimeMs>`. Run beside an idle
// primary it shows how much of the busy-primary slowdown is only the CPU
// the busy-wait takes from the workers on a small machine.

const { performance } = require('node:perf_hooks');

const [busyMs, periodMs, lifetimeMs] = process.argv.slice(2).map(Number);
setInterval(() => {
  const end = performance.now() + busyMs;
  while (performance.now() < end);
}, periodMs);
setTimeout(() => process.exit(0), lifetimeMs);
