'use strict';
// The control socket of a running cluster: a Unix socket (mode 0600, in a
// directory of mode 0700) where another shell of the same user asks for
// status, reload, scale or stop. One JSON request line, one JSON reply
// line. A peer of another user is refused (SO_PEERCRED), a malformed
// request gets an error reply; neither disturbs the cluster.

const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const native = require('./native.js');

const MAX_REQUEST = 64 * 1024;
const REQUEST_TIMEOUT_MS = 5000;

// $XDG_RUNTIME_DIR/native-cluster, else <tmpdir>/native-cluster-<uid>.
function directory(env = process.env) {
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'native-cluster');
  return path.join(os.tmpdir(), `native-cluster-${process.getuid()}`);
}

function socketPath(name, env) {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name) || name.startsWith('.')) {
    throw new Error(`invalid name ${JSON.stringify(name)}: letters, digits, '.', '_' and '-' only`);
  }
  return path.join(directory(env), `${name}.sock`);
}

// The names of the control sockets in the directory.
function names(env) {
  try {
    return fs.readdirSync(directory(env)).filter((f) => f.endsWith('.sock')).map((f) => f.slice(0, -5));
  } catch {
    return [];
  }
}

function connect(file) {
  return new Promise((resolve, reject) => {
    const s = net.connect(file);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

// Opens the control socket of `name`; `handle(request)` answers each
// request (a promise of a JSON-able reply). Refuses when a live cluster
// holds the name; a stale socket file is removed.
async function serve(name, handle, env) {
  const file = socketPath(name, env);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const st = fs.statSync(path.dirname(file));
  if (st.uid !== process.getuid() || (st.mode & 0o077) !== 0) {
    throw new Error(`${path.dirname(file)} must belong to this user with mode 0700`);
  }
  if (fs.existsSync(file)) {
    try {
      (await connect(file)).destroy();
      throw Object.assign(new Error(`a cluster named ${name} is running (${file})`), { code: 'EADDRINUSE' });
    } catch (err) {
      if (err.code === 'EADDRINUSE') throw err;
      fs.rmSync(file, { force: true });
    }
  }
  const server = net.createServer((socket) => onClient(socket, handle));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    const mask = process.umask(0o177);
    server.listen(file, () => {
      process.umask(mask);
      resolve();
    });
  });
  fs.chmodSync(file, 0o600);
  server.unref();
  const close = () => {
    server.close();
    fs.rmSync(file, { force: true });
  };
  process.once('exit', () => fs.rmSync(file, { force: true }));
  return { file, close };
}

function reply(socket, body) {
  if (!socket.destroyed) socket.end(`${JSON.stringify(body)}\n`);
}

function onClient(socket, handle) {
  socket.on('error', () => {});
  let uid;
  try {
    uid = native.peerUid(socket._handle.fd);
  } catch {
    uid = -1;
  }
  if (uid !== process.getuid()) {
    reply(socket, { ok: false, error: 'permission denied: another user' });
    return;
  }
  socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy());
  let buf = '';
  const onData = (d) => {
    buf += d;
    const nl = buf.indexOf('\n');
    if (nl < 0 && buf.length <= MAX_REQUEST) return;
    socket.off('data', onData);
    socket.setTimeout(0);
    if (nl < 0) return reply(socket, { ok: false, error: 'request too large' });
    let request;
    try {
      request = JSON.parse(buf.slice(0, nl));
    } catch {
      return reply(socket, { ok: false, error: 'malformed request: not JSON' });
    }
    if (request === null || typeof request !== 'object' || typeof request.cmd !== 'string') {
      return reply(socket, { ok: false, error: 'malformed request: no cmd' });
    }
    Promise.resolve()
      .then(() => handle(request))
      .then((body) => reply(socket, { ok: true, ...body }),
        (err) => reply(socket, { ok: false, error: err.message }));
  };
  socket.setEncoding('utf8');
  socket.on('data', onData);
}

// Sends one request to the cluster `name`; resolves with its reply.
async function request(name, body, env) {
  const socket = await connect(socketPath(name, env));
  return new Promise((resolve, reject) => {
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('data', (d) => { buf += d; });
    socket.on('end', () => {
      try {
        resolve(JSON.parse(buf));
      } catch {
        reject(new Error(`no reply from ${name}`));
      }
    });
    socket.on('error', reject);
    socket.write(`${JSON.stringify(body)}\n`);
  });
}

module.exports = { serve, request, names, directory };
