'use strict';
// systemd socket activation: a primary started with LISTEN_PID (its own
// pid) and LISTEN_FDS = n was handed listening sockets as descriptors 3 to
// 3+n-1. They are taken here, when the cluster module loads, and the
// variables removed so that no worker believes it was activated; the core
// then serves every worker's listen() on a matching address and port (or
// socket path) from them instead of binding.

function take(env = process.env) {
  const pid = Number(env.LISTEN_PID);
  const count = Number(env.LISTEN_FDS);
  if (pid !== process.pid || !Number.isInteger(count) || count <= 0) return [];
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  return Array.from({ length: count }, (_, i) => 3 + i);
}

module.exports = { take };
