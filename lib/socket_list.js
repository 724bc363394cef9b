'use strict';
// Bookkeeping for sockets that came from a net.Server and crossed the
// channel, as Node's socket lists do: the sending side's server asks the
// receiving side how many of its sockets are still open (NODE_SOCKET_*).

const EventEmitter = require('node:events');
const { makeError } = require('./errors.js');

// Receiving side: counts live sockets sent under one server key and answers
// the sender's questions.
class SocketListReceive extends EventEmitter {
  constructor(child, key) {
    super();
    this.connections = 0;
    this.key = key;
    this.child = child;
    const onempty = () => {
      if (!this.child.connected) return;
      this.child._sendInternal({ cmd: 'NODE_SOCKET_ALL_CLOSED', key: this.key });
    };
    this.child.on('internalMessage', (msg) => {
      if (msg.key !== this.key) return;
      if (msg.cmd === 'NODE_SOCKET_NOTIFY_CLOSE') {
        if (this.connections === 0) return onempty();
        this.once('empty', onempty);
      } else if (msg.cmd === 'NODE_SOCKET_GET_COUNT') {
        if (!this.child.connected) return;
        this.child._sendInternal({ cmd: 'NODE_SOCKET_COUNT', key: this.key, count: this.connections });
      }
    });
  }

  add(socket) {
    this.connections++;
    socket.once('close', () => {
      this.connections--;
      if (this.connections === 0) this.emit('empty', this);
    });
  }
}

// Sending side: what net.Server._setupWorker() expects for a worker that
// holds some of its sockets.
class SocketListSend extends EventEmitter {
  constructor(child, key) {
    super();
    this.key = key;
    this.child = child;
    child.once('exit', () => this.emit('exit', this));
  }

  _request(msg, cmd, callback) {
    const child = this.child;
    const onclose = () => {
      child.removeListener('internalMessage', onreply);
      callback(makeError(Error, 'ERR_CHILD_CLOSED_BEFORE_REPLY', 'Child closed before reply received'));
    };
    const onreply = (reply) => {
      if (!(reply.cmd === cmd && reply.key === this.key)) return;
      child.removeListener('disconnect', onclose);
      child.removeListener('internalMessage', onreply);
      callback(null, reply);
    };
    if (!child.connected) return onclose();
    child._sendInternal(msg);
    child.once('disconnect', onclose);
    child.on('internalMessage', onreply);
  }

  close(callback) {
    this._request({ cmd: 'NODE_SOCKET_NOTIFY_CLOSE', key: this.key }, 'NODE_SOCKET_ALL_CLOSED', callback);
  }

  getConnections(callback) {
    this._request({ cmd: 'NODE_SOCKET_GET_COUNT', key: this.key }, 'NODE_SOCKET_COUNT', (err, msg) => {
      if (err) return callback(err);
      callback(null, msg.count);
    });
  }
}

module.exports = { SocketListReceive, SocketListSend };
