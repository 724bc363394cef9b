'use strict';
// What a worker's HTTP/1 servers (http and https) do when the primary
// disconnects the worker (a reload's retirement, a graceful stop): no
// keep-alive connection is closed while its client may be sending on it.
//
// Node's worker answers the disconnect with server.close(), which since
// Node 19 also calls closeIdleConnections(): every keep-alive connection
// between two requests (or accepted, its first request not read yet) is
// destroyed at once, and a client whose next request is already on its way
// gets ECONNRESET. Instead, that one call is skipped, and from then on every
// request is answered with `Connection: close` (the connection ends after
// the response). A connection that stays idle is closed by the server's own
// keep-alive timer (keepAliveTimeout, plus Node's buffer), as it would be
// without a disconnect; Node's close callback, and so the worker's exit,
// waits for the last one. HTTP/2 servers (no closeIdleConnections) are left
// to Node.

function retire(servers) {
  for (const server of servers) {
    if (typeof server.closeIdleConnections !== 'function') continue;
    answerWithClose(server);
    skipOneIdleSweep(server);
  }
}

function answerWithClose(server) {
  const last = (req, res) => { res.shouldKeepAlive = false; };
  server.prependListener('request', last);
  // Requests with `Expect:` reach these instead of 'request' when the app
  // listens for them (adding a listener where it does not would change
  // what Node answers).
  for (const event of ['checkContinue', 'checkExpectation']) {
    if (server.listenerCount(event) > 0) server.prependListener(event, last);
  }
}

// Node's disconnect handler runs right after this module's caller, in the
// same turn: the server's own method is back before anything else can call
// it.
function skipOneIdleSweep(server) {
  const own = Object.getOwnPropertyDescriptor(server, 'closeIdleConnections');
  server.closeIdleConnections = function keepIdleConnections() {};
  process.nextTick(() => {
    if (own) Object.defineProperty(server, 'closeIdleConnections', own);
    else delete server.closeIdleConnections;
  });
}

module.exports = { retire };
