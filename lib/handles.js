'use strict';
// Sendable handles: which descriptor a net/dgram object stands on, and how a
// received descriptor becomes an object again (as Node's handleConversion).

const net = require('node:net');
const dgram = require('node:dgram');

function dgramState(socket) {
  const sym = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol');
  return sym === undefined ? undefined : socket[sym];
}

// The envelope type of a handle, or undefined when it cannot be sent.
function handleType(handle) {
  if (handle instanceof net.Socket) return 'net.Socket';
  if (handle instanceof net.Server) return 'net.Server';
  if (handle instanceof dgram.Socket) return 'dgram.Socket';
  return undefined;
}

// The descriptor behind a handle, or undefined when it has none (a closed
// socket): Node then sends the message without the handle.
function handleFd(type, handle) {
  let h;
  if (type === 'dgram.Socket') h = dgramState(handle)?.handle;
  else h = handle._handle;
  const fd = h?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

// What Node does to a net.Socket it sent without `keepOpen`: the socket
// forgets its handle, and the handle is closed (the receiver has its own).
function detachSocket(socket, options) {
  if (options.keepOpen) return;
  const handle = socket._handle;
  if (!handle) return;
  if (socket.server) socket.server._connections--;
  handle.onread = () => {};
  socket._handle = null;
  socket.setTimeout(0);
  handle.close();
}

// Turns a received descriptor into the object the sender had; calls back
// with it once usable.
function revive(envelope, fd, cb) {
  switch (envelope.type) {
    case 'net.Server': {
      const server = new net.Server();
      server.listen({ fd }, () => cb(server));
      return;
    }
    case 'dgram.Socket': {
      const socket = dgram.createSocket(envelope.dgramType || 'udp4');
      socket.bind({ fd }, () => cb(socket));
      return;
    }
    case 'dgram.Native':
    case 'net.Native':
    case 'net.Socket':
    default:
      cb(new net.Socket({ fd, readable: true, writable: true }));
  }
}

module.exports = { handleType, handleFd, detachSocket, revive };
