'use strict';
// Preloaded (--require) into bench/sticky_race.mjs's app, primary and
// workers: stamps each step of @socket.io/sticky's session binding on
// stderr with CLOCK_MONOTONIC (process.hrtime, comparable across
// processes): `send` when a worker sends its session id to the primary,
// `bound` when the primary's JavaScript receives it, `req` when the
// primary reads the first bytes of a connection (with the session id the
// request names, or `-`).

const cluster = require('node:cluster');
const net = require('node:net');

const stamp = (...fields) => process.stderr.write(`@@t ${process.hrtime.bigint()} ${fields.join(' ')}\n`);

if (cluster.isPrimary) {
  const emit = net.Socket.prototype.emit;
  net.Socket.prototype.emit = function emitStamped(event, chunk) {
    if (event === 'data' && !this.stickyTraced) {
      this.stickyTraced = true;
      const head = chunk.toString('latin1', 0, 256);
      stamp('req', head.match(/[?&]sid=([^& ]+)/)?.[1] ?? '-');
    }
    return emit.apply(this, arguments);
  };
  // After the app's own listeners: the primary's JavaScript has the message.
  setImmediate(() => cluster.on('message', (worker, m) => {
    if (m && m.type === 'sticky:connection') stamp('bound', m.data);
  }));
} else {
  const send = process.send;
  process.send = function sendStamped(m) {
    if (m && m.type === 'sticky:connection') stamp('send', m.data);
    return send.apply(this, arguments);
  };
}
