'use strict';
// Listening sockets of new round-robin TCP servers are created here, by
// `net`, with the options Node's primary uses, so bind errors, the backlog
// and anything hooked onto `net.Server.prototype.listen` behave as with
// node:cluster. The core takes a copy of the socket and accepts on it from
// its own thread; this side's server is closed at once.

const net = require('node:net');
const native = require('./native.js');

const UV_EINVAL = -22;

function listenForWorkers(bind, optionsJson) {
  const { port, host, ipv6Only, backlog } = JSON.parse(optionsJson);
  const options = { port, host, ipv6Only, backlog };
  const server = net.createServer();
  let settled = false;
  const answer = (fd, errno) => {
    if (settled) return;
    settled = true;
    native.listened(bind, fd, errno);
  };
  server.once('error', (err) => {
    answer(-1, typeof err.errno === 'number' ? err.errno : UV_EINVAL);
  });
  server.once('listening', () => {
    const fd = server._handle ? server._handle.fd : -1;
    if (typeof fd === 'number' && fd >= 0) answer(fd, 0);
    else answer(-1, UV_EINVAL);
    // libuv has not polled the socket yet ('listening' comes on the same
    // tick as listen(2)), so no connection was accepted on this side.
    server.close();
  });
  try {
    server.listen(options);
  } catch {
    // Options a worker's net already validated; a throw here means a value
    // Node's primary would reject too.
    answer(-1, UV_EINVAL);
  }
}

module.exports = { listenForWorkers };
