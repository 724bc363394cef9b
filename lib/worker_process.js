'use strict';
// `worker.process`: a ChildProcess-like view of a worker the native core
// spawned. Its channel lives on the core's I/O thread; this object keeps
// Node's observable state (connected, exitCode, signalCode, killed) and events.

const EventEmitter = require('node:events');
// For `instanceof ChildProcess`; it loads net, dgram and stream too, which
// is why this module waits for the first fork.
const { ChildProcess } = require('node:child_process');
const diagnostics = require('node:diagnostics_channel');
const net = require('node:net');
const native = require('./native.js');
const serialization = require('./serialization.js');
const liveness = require('./liveness.js');

// Needed only for handles, errors, kill() and signal exits.
const lib = {
  get os() { return require('node:os'); },
  get handles() { return require('./handles.js'); },
  get errors() { return require('./errors.js'); },
  get socketList() { return require('./socket_list.js'); },
};

const childProcessChannel = diagnostics.channel('child_process');
let signalNames = null;

function signalName(signo) {
  if (signalNames === null) {
    signalNames = Object.create(null);
    for (const [name, num] of Object.entries(lib.os.constants.signals)) signalNames[num] = name;
  }
  return signalNames[signo];
}

// Node's error for a failed system call, from the errno's name (the
// binding's errors carry it as `code`).
function errnoException(code, syscall) {
  const errno = lib.os.constants.errno[code];
  const err = new Error(`${syscall} ${code}`);
  err.errno = errno === undefined ? undefined : -errno;
  err.code = code;
  err.syscall = syscall;
  return err;
}

const kSendQueueLimit = 65536 * 2;

class WorkerProcess extends EventEmitter {
  constructor(id, spawnfile, spawnargs, serializationMode) {
    super();
    this._id = id;
    this.connected = false;
    this.signalCode = null;
    this.exitCode = null;
    this.killed = false;
    this.spawnfile = spawnfile;
    this.spawnargs = spawnargs;
    // The core forks on its I/O thread; `pid` waits for it only when read.
    this._pid = undefined;
    this._launching = false;
    Object.defineProperty(this, 'pid', { get: readPid, set: assignPid, enumerable: true, configurable: true });
    this.stdin = null;
    this.stdout = null;
    this.stderr = null;
    this.stdio = [];
    this._codec = serialization[serializationMode];
    this._exited = false;
    this._channelOpen = false;
    this._refed = true;
    this._closesNeeded = 1;
    this._closesGot = 0;
    this._socketLists = { got: new Map(), send: new Map() };
    // Callbacks of send()s whose frames the I/O thread has not yet written.
    this._sendCallbacks = [];
    // Bytes sent and not yet reported written (`written` events), as Node's
    // channel.writeQueueSize; the core reports in chunks, so this runs
    // up to 32 KiB above the truth.
    this._unwritten = 0;
    this.channel = null;
    if (childProcessChannel.hasSubscribers) childProcessChannel.publish({ process: this });
  }

  _socketList(kind, key) {
    const lists = this._socketLists[kind];
    let list = lists.get(key);
    if (list === undefined) {
      list = kind === 'got' ? new lib.socketList.SocketListReceive(this, key) : new lib.socketList.SocketListSend(this, key);
      lists.set(key, list);
    }
    return list;
  }

  // An internal message of our own (never gated by a handle in flight on
  // the sender's side, like Node's swallowErrors sends).
  _sendInternal(message) {
    if (!this.connected) return false;
    this._write(this._codec.encode(message), undefined, false);
    return true;
  }

  // The process's pid, whatever the user has assigned to `pid`; waits for
  // the I/O thread's fork on first call only.
  _osPid() {
    if (this._launching) {
      let pid;
      try {
        pid = native.pid(this._id);
      } catch (err) {
        // Not forked yet after the wait: ask again next time.
        if (err.code === 'ERR_NATIVE_CLUSTER_TIMEOUT') return undefined;
        throw err;
      }
      this._launching = false;
      if (pid != null) this._pid = pid;
    }
    return this._pid;
  }

  // `pid` becomes the data property Node's is, once the fork is known done
  // (a read or an event from the process), unless the user assigned it.
  _settlePid() {
    if (Object.getOwnPropertyDescriptor(this, 'pid')?.get === readPid) pidProperty(this, this._osPid());
  }

  // Called once the core has been asked to start the process.
  _started(pipes, stdio) {
    this._launching = true;
    this.connected = true;
    this._channelOpen = true;
    // The channel itself lives on the I/O thread; it never keeps the event
    // loop alive on its own, so ref/unref have nothing to change.
    this.channel = { ref() {}, unref() {}, fd: undefined };
    this._closesNeeded++;
    stdio.forEach((kind, i) => {
      const fd = pipes[i];
      if (kind !== 'pipe' || fd == null) {
        this.stdio.push(null);
        return;
      }
      const readable = i > 0;
      const stream = new net.Socket({ fd, readable, writable: true });
      if (readable) {
        this._closesNeeded++;
        stream.on('close', () => this._maybeClose());
      }
      this.stdio.push(stream);
    });
    this.stdin = this.stdio[0] || null;
    this.stdout = this.stdio[1] || null;
    this.stderr = this.stdio[2] || null;
    // Node's setupChannel gives each process its own send() and disconnect().
    this.send = WorkerProcess.prototype.send;
    this.disconnect = WorkerProcess.prototype.disconnect;
    liveness.hold();
  }

  // The I/O thread could not start the process (`code`: the errno's name).
  _launchFailed(code) {
    this._launching = false;
    this.connected = false;
    this.channel = null;
    this._channelOpen = false;
    this._exited = true;
    if (this._refed) liveness.release();
    this._spawnFailed(code);
  }

  _spawnFailed(code) {
    this._settlePid();
    const err = errnoException(code, `spawn ${this.spawnfile}`);
    err.path = this.spawnfile;
    err.spawnargs = this.spawnargs.slice(1);
    process.nextTick(() => {
      this.exitCode = err.errno;
      this.emit('error', err);
    });
  }

  send(message, handle, options, callback) {
    if (typeof handle === 'function') {
      callback = handle;
      handle = undefined;
      options = undefined;
    } else if (typeof options === 'function') {
      callback = options;
      options = undefined;
    } else if (options !== undefined) {
      if (options === null || typeof options !== 'object' || Array.isArray(options)) {
        throw lib.errors.ERR_INVALID_ARG_TYPE('options', 'Object', options);
      }
    }
    options = { swallowErrors: false, ...options };
    if (this.connected) return this._send(message, handle, options, callback);
    const ex = lib.errors.ERR_IPC_CHANNEL_CLOSED();
    if (typeof callback === 'function') process.nextTick(callback, ex);
    else process.nextTick(() => this.emit('error', ex));
    return false;
  }

  _send(message, handle, options, callback) {
    if (message === undefined) throw lib.errors.ERR_MISSING_ARGS('message');
    if (typeof message !== 'string' && typeof message !== 'object' &&
        typeof message !== 'number' && typeof message !== 'boolean') {
      throw lib.errors.ERR_INVALID_ARG_TYPE('message', ['string', 'object', 'number', 'boolean'], message);
    }
    let payload = message;
    let fd;
    let type;
    if (handle) {
      type = lib.handles.handleType(handle);
      if (type === undefined) throw lib.errors.ERR_INVALID_HANDLE_TYPE();
      fd = lib.handles.handleFd(type, handle);
      if (fd !== undefined) {
        payload = { cmd: 'NODE_HANDLE', type, msg: message };
        if (type === 'dgram.Socket') payload.dgramType = handle.type;
        if (type === 'net.Socket' && handle.server) {
          // The server keeps asking this worker about the sockets it holds.
          payload.key = handle.server._connectionKey;
          const first = !this._socketLists.send.has(payload.key);
          const list = this._socketList('send', payload.key);
          if (first) handle.server._setupWorker(list);
        }
      }
    }
    const wantsCallback = typeof callback === 'function';
    this._write(this._codec.encode(payload), fd, wantsCallback);
    // Called on the `written` event for the frame, in send order.
    if (wantsCallback) this._sendCallbacks.push(callback);
    if (fd !== undefined && type === 'net.Socket') lib.handles.detachSocket(handle, options);
    // As Node's `channel.writeQueueSize < 65536 * 2`: false once more than
    // 128 KiB wait to be written.
    return this._unwritten < kSendQueueLimit;
  }

  // Queues the frame for the I/O thread, behind everything sent before it,
  // and counts its bytes as unwritten.
  _write(frame, fd, callback = false) {
    let bytes;
    if (typeof frame !== 'string') bytes = native.send(this._id, frame, fd, callback);
    else if (fd === undefined) bytes = native.sendText(this._id, frame, callback);
    else bytes = native.send(this._id, Buffer.from(frame, 'utf8'), fd, callback);
    this._unwritten += bytes;
  }

  // `count` more frames with a callback and `bytes` more bytes were
  // written (or never will be, the channel having closed), in send order.
  _onWritten(count, bytes) {
    this._unwritten -= bytes;
    for (let i = 0; i < count; i++) {
      const callback = this._sendCallbacks.shift();
      // At once, as Node calls it on its write's completion: before a
      // message read after that write (the worker's answer, say) is emitted.
      if (callback !== undefined) callback(null);
    }
  }

  disconnect() {
    if (!this.connected) {
      this.emit('error', lib.errors.ERR_IPC_DISCONNECTED());
      return;
    }
    this.connected = false;
    this.channel = null;
    native.closeChannel(this._id);
  }

  kill(sig) {
    const signal = sig === 0 ? 0 : convertSignal(sig === undefined ? 'SIGTERM' : sig);
    if (this._exited || this._osPid() === undefined) return false;
    try {
      native.kill(this._id, signal);
    } catch (err) {
      if (err.code === 'ESRCH') return false;
      const ex = errnoException(err.code, 'kill');
      if (err.code === 'EINVAL' || err.code === 'ENOSYS') throw ex;
      this.emit('error', ex);
      return false;
    }
    this.killed = true;
    return true;
  }

  ref() {
    if (!this._refed && !this._exited) {
      this._refed = true;
      liveness.hold();
    }
  }

  unref() {
    if (this._refed && !this._exited && (this._launching || this._pid !== undefined)) {
      this._refed = false;
      liveness.release();
    }
  }

  // A batch of user messages from the core (see Event::Messages). JSON:
  // one message per line, each parsed as it is emitted, as Node does; a
  // batch parsed at once would keep all its messages alive until the last
  // listener ran, and the young generation grows with what survives.
  _onMessages(data, lengths, json) {
    if (json) {
      for (let start = 0; start <= data.length;) {
        let end = data.indexOf(10, start);
        if (end === -1) end = data.length;
        let message;
        try {
          message = JSON.parse(data.toString('utf8', start, end));
        } catch (err) {
          this._badMessage(err);
          start = end + 1;
          continue;
        }
        start = end + 1;
        this.emit('message', message);
      }
      return;
    }
    let start = 0;
    for (const len of lengths) {
      this._onMessage(data.subarray(start, start + len));
      start += len;
    }
  }

  // A user message (or handle envelope) the core passed up.
  _onMessage(data, fd) {
    let message;
    try {
      message = this._codec.decode(data);
    } catch (err) {
      if (fd != null) native.closeFd(fd);
      this._badMessage(err);
      return;
    }
    if (fd == null) {
      this.emit('message', message);
      return;
    }
    lib.handles.revive(message, fd, (handle) => {
      if (message.type === 'net.Socket' && message.key) this._socketList('got', message.key).add(handle);
      this.emit('message', message.msg, handle);
    });
  }

  _badMessage(err) {
    this._protocolError(lib.errors.makeError(Error, 'ERR_CLUSTER_BAD_MESSAGE',
      `worker sent a message that cannot be decoded: ${err.message}`));
  }

  _onInternal(data) {
    let message;
    try {
      message = this._codec.decode(data);
    } catch (err) {
      this._badMessage(err);
      return;
    }
    this.emit('internalMessage', message);
  }

  _protocolError(err) {
    // Without a listener an 'error' would throw on the I/O callback and take
    // the primary down; a warning keeps every other worker served. The
    // cluster Worker's own forwarding listener does not count.
    const worker = this._worker;
    const listened = worker ?
      worker.listenerCount('error') > 0 || this.listenerCount('error') > 1 :
      this.listenerCount('error') > 0;
    if (listened) this.emit('error', err);
    else process.emitWarning(err.message, { code: err.code });
  }

  _onDisconnect() {
    if (!this._channelOpen) return;
    this._channelOpen = false;
    this.connected = false;
    this.channel = null;
    this.emit('disconnect');
    this._maybeClose();
  }

  _onExit(code, signo) {
    if (this._exited) return;
    this._settlePid();
    this._exited = true;
    if (signo != null) this.signalCode = signalName(signo) || `SIG${signo}`;
    else this.exitCode = code;
    if (this.stdin) this.stdin.destroy();
    if (this._refed) liveness.release();
    this.emit('exit', this.exitCode, this.signalCode);
    process.nextTick(() => {
      for (const s of this.stdio) if (s && s.readable) s.resume();
    });
    this._maybeClose();
  }

  _maybeClose() {
    this._closesGot++;
    if (this._closesGot === this._closesNeeded) this.emit('close', this.exitCode, this.signalCode);
  }
}

// Node's ChildProcess API and `instanceof ChildProcess`, without its
// libuv process handle (the core owns the process).
Object.setPrototypeOf(WorkerProcess.prototype, ChildProcess.prototype);
// Node assigns ChildProcess.prototype's methods, so for...in lists them.
for (const name of ['kill', 'ref', 'unref']) {
  Object.defineProperty(WorkerProcess.prototype, name, { enumerable: true });
}

// Node's `pid` is an own data property, set at spawn and assignable (PM2
// sets it to 0 when it stops a process). Ours is known only once the I/O
// thread has forked, so until then it is an accessor that turns into that
// data property when read or assigned.
function readPid() {
  const pid = this._osPid();
  pidProperty(this, pid);
  return pid;
}

function assignPid(value) {
  pidProperty(this, value);
}

function pidProperty(target, value) {
  Object.defineProperty(target, 'pid', { value, writable: true, enumerable: true, configurable: true });
}

function convertSignal(sig) {
  if (typeof sig === 'number' && signalName(sig) !== undefined) return sig;
  if (typeof sig === 'string') {
    const n = lib.os.constants.signals[sig.toUpperCase()];
    if (n !== undefined) return n;
  }
  throw lib.errors.ERR_UNKNOWN_SIGNAL(sig);
}

module.exports = WorkerProcess;
