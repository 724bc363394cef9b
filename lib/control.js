'use strict';
// The control socket of a running cluster: a Unix socket (mode 0600, in a
// directory of mode 0700) where another shell of the same user asks for
// status, reload, scale or stop. One JSON request line, one JSON reply
// line. A peer of another user is refused (SO_PEERCRED), a malformed
// request gets an error reply; neither disturbs the cluster. A socket file
// nobody answers on (its cluster was killed) is stale: discovery and a
// new cluster of that name remove it.

const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const native = require('./native.js');

const MAX_REQUEST = 64 * 1024;
const REQUEST_TIMEOUT_MS = 5000;
// sizeof(sockaddr_un.sun_path), the terminating NUL included: a longer
// path would be truncated by bind() (a socket file of another name).
const SUN_PATH = process.platform === 'linux' ? 108 : 104;

// $XDG_RUNTIME_DIR/native-cluster, else <tmpdir>/native-cluster-<uid>.
function directory(env = process.env) {
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'native-cluster');
  return path.join(os.tmpdir(), `native-cluster-${process.getuid()}`);
}

function socketPath(name, env) {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name) || name.startsWith('.')) {
    throw new Error(`invalid name ${JSON.stringify(name)}: letters, digits, '.', '_' and '-' only`);
  }
  const file = path.join(directory(env), `${name}.sock`);
  const bytes = Buffer.byteLength(file);
  if (bytes >= SUN_PATH) {
    throw Object.assign(new Error(`control socket path too long: ${file} is ${bytes} bytes, ` +
      `at most ${SUN_PATH - 1} fit in a Unix socket address (use a shorter XDG_RUNTIME_DIR or --name)`),
    { code: 'ENAMETOOLONG' });
  }
  return file;
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

// Whether a cluster answers on `file`: false (and the file removed) when
// nobody listens there any more (ECONNREFUSED: its primary was killed
// before it could remove it), or when it is gone.
async function answers(file) {
  try {
    (await connect(file)).destroy();
    return true;
  } catch (err) {
    if (err.code === 'ECONNREFUSED') {
      fs.rmSync(file, { force: true });
      return false;
    }
    return err.code !== 'ENOENT';
  }
}

// The names of the clusters whose control socket answers; stale sockets
// are removed on the way.
async function running(env) {
  const found = [];
  for (const name of names(env)) {
    let file;
    try {
      file = socketPath(name, env);
    } catch {
      continue;
    }
    if (await answers(file)) found.push(name);
  }
  return found;
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
  if (fs.existsSync(file) && await answers(file)) {
    throw Object.assign(new Error(`a cluster named ${name} is running (${file})`), { code: 'EADDRINUSE' });
  }
  // Requests being handled, answered by the exit handler if the process
  // exits first (a reload that a stop cut short).
  const pending = new Map(); // socket -> cmd
  const server = net.createServer((socket) => onClient(socket, handle, pending));
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
  process.once('exit', () => {
    // A write to a Unix socket with room in its buffer completes at once,
    // so these replies leave before the process does.
    for (const [socket, cmd] of pending) {
      reply(socket, { ok: false, error: `${cmd} interrupted: the cluster is stopping` });
    }
    fs.rmSync(file, { force: true });
  });
  return { file, close };
}

function reply(socket, body) {
  if (!socket.destroyed) socket.end(`${JSON.stringify(body)}\n`);
}

// A stop's reply leaves the connection open: it closes when the process
// exits, which is how the client learns that the cluster has exited.
function replyAndHold(socket, body) {
  if (socket.destroyed) return;
  socket.unref();
  socket.write(`${JSON.stringify(body)}\n`);
}

function onClient(socket, handle, pending) {
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
    pending.set(socket, request.cmd);
    socket.once('close', () => pending.delete(socket));
    Promise.resolve()
      .then(() => handle(request))
      .then((body) => {
        pending.delete(socket);
        if (request.cmd === 'stop') replyAndHold(socket, { ok: true, pid: process.pid, ...body });
        else reply(socket, { ok: true, ...body });
      }, (err) => {
        pending.delete(socket);
        reply(socket, { ok: false, error: err.message });
      });
  };
  socket.setEncoding('utf8');
  socket.on('data', onData);
}

// Sends one request to the cluster `name`; resolves with its reply line.
// Not enumerable on the reply: `closed`, a promise that resolves once the
// cluster closes the connection (after a stop, once its primary has
// exited), and `hangUp()`, which stops waiting for that.
async function request(name, body, env) {
  const file = socketPath(name, env);
  const socket = await connect(file).catch((err) => {
    if (err.code === 'ECONNREFUSED') fs.rmSync(file, { force: true });
    throw err;
  });
  const closed = new Promise((resolve) => socket.once('close', resolve));
  return new Promise((resolve, reject) => {
    let buf = '';
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      const nl = buf.indexOf('\n');
      let parsed;
      try {
        parsed = JSON.parse(nl < 0 ? buf : buf.slice(0, nl));
      } catch {
        socket.destroy();
        reject(new Error(`no reply from ${name}`));
        return;
      }
      Object.defineProperties(parsed, { closed: { value: closed }, hangUp: { value: () => socket.destroy() } });
      resolve(parsed);
    };
    socket.setEncoding('utf8');
    socket.on('data', (d) => {
      buf += d;
      if (buf.includes('\n')) finish();
    });
    socket.on('end', finish);
    socket.on('error', (err) => {
      if (!done) {
        done = true;
        reject(err);
      }
    });
    socket.write(`${JSON.stringify(body)}\n`);
  });
}

module.exports = { serve, request, names, running, directory, socketPath };
