'use strict';
// The cluster module as the primary sees it: node:cluster's API and event
// order, with the process spawning, channels and connection distribution
// done by the native core.

const EventEmitter = require('node:events');
const path = require('node:path');
const native = require('./native.js');
const Worker = require('./worker.js');
const { SCHED_NONE, SCHED_RR, SCHED_REUSEPORT, SCHED_STICKY, policyFromEnv, policyName } =
  require('./policies.js');

// Every app pays for what is loaded at require time: what a program needs
// only once it forks (child_process, net and dgram behind worker.process),
// or only if it calls it (reload, stats, the watchdog), waits for first use.
const lib = lazy({
  WorkerProcess: './worker_process.js',
  errors: './errors.js',
  instances: './instances.js',
  readiness: './readiness.js',
  watchdog: './watchdog.js',
  reload: './reload.js',
  watching: './watch.js',
  statistics: './stats.js',
  selfAccepted: './self_accepted.js',
  roundRobin: './round_robin_listen.js',
  parallelism: './parallelism.js',
  os: 'node:os',
});

function lazy(ids) {
  const modules = {};
  for (const [name, id] of Object.entries(ids)) {
    Object.defineProperty(modules, name, {
      configurable: true,
      get() {
        const value = require(id);
        Object.defineProperty(modules, name, { value });
        return value;
      },
    });
  }
  return modules;
}

const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
const PRELOAD = path.join(__dirname, 'worker_preload.cjs');

const cluster = new EventEmitter();
const intercom = new EventEmitter();
// Every worker whose process has not been reported dead, by id, including
// those already removed from cluster.workers.
const live = new Map();
// For the workers' uptime in stats().
const forkedAt = new WeakMap();

module.exports = cluster;

cluster.isWorker = false;
cluster.isMaster = true;
cluster.isPrimary = true;
cluster.Worker = Worker;
cluster.workers = {};
cluster.settings = {};
cluster.SCHED_NONE = SCHED_NONE;
cluster.SCHED_RR = SCHED_RR;
cluster.SCHED_REUSEPORT = SCHED_REUSEPORT;
cluster.SCHED_STICKY = SCHED_STICKY;

// Sockets passed by a service manager (taken before any fork can copy the
// environment that announces them; without LISTEN_FDS there are none).
const activated = process.env.LISTEN_FDS === undefined ? [] : require('./activation.js').take();

let ids = 0;
let initialized = false;
let started = false;

let schedulingPolicy = policyFromEnv(process.env.NODE_CLUSTER_SCHED_POLICY);
cluster.schedulingPolicy = schedulingPolicy;

function validatePort(port, name = 'Port', allowZero = true) {
  if ((typeof port !== 'number' && typeof port !== 'string') ||
      (typeof port === 'string' && port.trim().length === 0) ||
      +port !== (+port >>> 0) || port > 0xFFFF || (port === 0 && !allowZero)) {
    throw lib.errors.ERR_SOCKET_BAD_PORT(name, port, allowZero);
  }
  return port | 0;
}

const kInspectArgRegex = /--inspect(?:-brk|-port)?|--debug-port/;
function isUsingInspector(execArgv) {
  return execArgv.some((arg) => kInspectArgRegex.test(arg)) ||
    kInspectArgRegex.test(process.env.NODE_OPTIONS);
}

let debugPortOffset = 1;
function getInspectPort(inspectPort) {
  if (typeof inspectPort === 'function') {
    inspectPort = inspectPort();
  } else if (inspectPort == null) {
    inspectPort = process.debugPort + debugPortOffset;
    if (inspectPort > 65535) inspectPort = inspectPort - 65535 + 1024 - 1;
    debugPortOffset++;
  }
  validatePort(inspectPort);
  return inspectPort;
}

cluster.setupPrimary = function setupPrimary(options) {
  if (options != null) {
    validateListenGrace(options.listenGrace);
    validateSupervision(options);
  }
  const settings = {
    args: process.argv.slice(2),
    exec: process.argv[1],
    execArgv: process.execArgv,
    silent: false,
    ...cluster.settings,
    ...options,
  };
  // One V8 log per process: without --logfile=v8-%p.log they all share one
  // unusable file.
  if (settings.execArgv.some((s) => s.startsWith('--prof')) &&
      !settings.execArgv.some((s) => s.startsWith('--logfile='))) {
    settings.execArgv = [...settings.execArgv, '--logfile=v8-%p.log'];
  }
  cluster.settings = settings;
  if (started) configureNative();
  if (initialized === true) return process.nextTick(setupSettingsNT, settings);
  initialized = true;
  schedulingPolicy = cluster.schedulingPolicy; // Freeze policy.
  if (policyName(schedulingPolicy) === undefined) {
    throw new Error(`Bad cluster.schedulingPolicy: ${schedulingPolicy}`);
  }
  process.nextTick(setupSettingsNT, settings);
};

cluster.setupMaster = cluster.setupPrimary;

function setupSettingsNT(settings) {
  cluster.emit('setup', settings);
}

function configureNative() {
  native.configure(policyName(schedulingPolicy), NODE_MAJOR < 22, cluster.settings.listenGrace || 0);
}

// Our addition: how long (ms) a round-robin or sticky server outlives its
// last worker when that worker dies, so that connections wait in the
// backlog for its replacement instead of being refused.
function validateListenGrace(value) {
  if (value !== undefined) lib.errors.validateInteger(value, 'options.listenGrace', 0);
}

// Our additions: readiness by the worker's own word, the watchdog, and
// workers in a session of their own (out of reach of a terminal's Ctrl-C).
function validateSupervision(options) {
  for (const key of ['waitReady', 'detached']) {
    if (options[key] !== undefined && typeof options[key] !== 'boolean') {
      throw lib.errors.ERR_INVALID_ARG_TYPE(`options.${key}`, 'boolean', options[key]);
    }
  }
  if (options.heartbeatTimeout !== undefined) {
    lib.errors.validateInteger(options.heartbeatTimeout, 'options.heartbeatTimeout', 1);
  }
}

function ensureStarted() {
  if (started) return;
  started = true;
  native.start(onEvents);
  configureNative();
  if (activated.length > 0) native.activate(activated);
  // Under round-robin and sticky a server's first listen() waits for this
  // module in the primary: load it while the first worker is starting.
  if (schedulingPolicy === SCHED_RR || schedulingPolicy === SCHED_STICKY) setImmediate(() => lib.roundRobin);
  // Node writes IPC messages synchronously when it can, so one sent right
  // before exit usually arrives; ours wait on the I/O thread: let it finish.
  process.on('exit', () => {
    try {
      native.flush(1000);
    } catch {
      // The I/O thread is gone or slow: nothing more can be delivered.
    }
  });
}

function stdioToArray(stdio, silent) {
  if (typeof stdio === 'string') {
    switch (stdio) {
      case 'ignore':
      case 'overlapped':
      case 'pipe': return [stdio, stdio, stdio, 'ipc'];
      case 'inherit': return [0, 1, 2, 'ipc'];
      default: throw lib.errors.ERR_INVALID_ARG_VALUE('stdio', stdio);
    }
  }
  if (!Array.isArray(stdio)) return silent ? ['pipe', 'pipe', 'pipe', 'ipc'] : [0, 1, 2, 'ipc'];
  if (!stdio.includes('ipc')) {
    throw lib.errors.makeError(Error, 'ERR_CHILD_PROCESS_IPC_REQUIRED',
      "Forked processes must have an IPC channel, missing value 'ipc' in options.stdio");
  }
  return stdio;
}

// Maps one stdio entry to the core's slot names.
function stdioSlot(entry, i) {
  if (entry == null) return i < 3 ? 'pipe' : 'ignore';
  if (entry === 'pipe' || entry === 'overlapped') return 'pipe';
  if (entry === 'ignore' || entry === 'ipc') return entry;
  if (entry === 'inherit') return String(i);
  if (typeof entry === 'number') return String(entry);
  const fd = typeof entry.fd === 'number' ? entry.fd : entry._handle?.fd;
  if (typeof fd === 'number' && fd >= 0) return String(fd);
  throw lib.errors.ERR_INVALID_ARG_VALUE('stdio', entry);
}

function workerEnv(id, env, serialization, ipcIndex) {
  const merged = { ...process.env, ...env, NODE_UNIQUE_ID: `${id}` };
  // A preload that holds messages until the worker's code listens; it
  // removes itself from NODE_OPTIONS before any user code runs.
  const original = merged.NODE_OPTIONS;
  merged.NATIVE_CLUSTER_NODE_OPTIONS = JSON.stringify(original === undefined ? null : original);
  const preload = `--require ${JSON.stringify(PRELOAD)}`;
  merged.NODE_OPTIONS = original ? `${original} ${preload}` : preload;
  const pairs = [];
  for (const key of Object.keys(merged)) {
    const value = merged[key];
    if (value !== undefined) pairs.push(`${key}=${value}`);
  }
  pairs.push(`NODE_CHANNEL_FD=${ipcIndex}`);
  pairs.push(`NODE_CHANNEL_SERIALIZATION_MODE=${serialization}`);
  return pairs;
}

function createWorkerProcess(id, env) {
  const settings = cluster.settings;
  const execArgv = [...settings.execArgv];
  if (settings.inspectPort === null) throw lib.errors.ERR_SOCKET_BAD_PORT('Port', null, true);
  if (isUsingInspector(settings.execArgv)) {
    execArgv.push(`--inspect-port=${getInspectPort(settings.inspectPort)}`);
  }
  const serialization = settings.serialization === undefined ? 'json' : settings.serialization;
  if (serialization !== 'json' && serialization !== 'advanced') {
    throw lib.errors.ERR_INVALID_ARG_VALUE('options.serialization', serialization,
      "must be one of: undefined, 'json', 'advanced'");
  }
  const stdio = stdioToArray(settings.stdio, settings.silent).map(stdioSlot);
  const file = process.execPath;
  const args = [...execArgv];
  if (settings.exec !== undefined) args.push(settings.exec);
  args.push(...(settings.args || []));
  ensureStarted();
  // The I/O thread starts the process at once; the first fork's loading of
  // worker.process's modules (child_process...) overlaps with its start-up.
  let pipes;
  let failed;
  try {
    pipes = native.spawn({
      id,
      file,
      args,
      env: workerEnv(id, env, serialization, stdio.indexOf('ipc')),
      cwd: settings.cwd === undefined ? undefined : String(settings.cwd),
      uid: settings.uid,
      gid: settings.gid,
      stdio,
      serialization,
      detached: settings.detached === true,
    });
  } catch (err) {
    // The kernel refused (an errno's name as code): Node reports that as
    // the child's 'error' event; anything else is ours to throw.
    if (lib.os.constants.errno[err.code] === undefined) throw err;
    failed = err.code;
  }
  const proc = new lib.WorkerProcess(id, file, [file, ...args], serialization);
  if (failed !== undefined) proc._spawnFailed(failed);
  else proc._started(pipes, stdio);
  return proc;
}

function removeWorker(worker) {
  delete cluster.workers[worker.id];
  if (Object.keys(cluster.workers).length === 0) intercom.emit('disconnect');
}

cluster.fork = function fork(env) {
  return forkWorker(env, null);
};

// A fork; `predecessor`: the worker it replaces in a reload, whose number
// of servers it must listen on to be ready.
function forkWorker(env, predecessor) {
  cluster.setupPrimary();
  const id = ++ids;
  const settings = cluster.settings;
  const ours = { NODE_APP_INSTANCE: String(lib.instances.assign(id, env)) };
  if (settings.heartbeatTimeout) Object.assign(ours, lib.watchdog.workerEnv(settings.heartbeatTimeout));
  let workerProcess;
  try {
    workerProcess = createWorkerProcess(id, { ...env, ...ours });
  } catch (err) {
    lib.instances.release(id);
    throw err;
  }
  const worker = new Worker({ id, process: workerProcess });
  workerProcess._worker = worker;
  // Not enumerable: stock's Worker has no such property to list.
  Object.defineProperty(worker, '_forkEnv', { value: env, writable: true, configurable: true });
  forkedAt.set(worker, Date.now());

  worker.on('message', function onMessage(message, handle) {
    cluster.emit('message', this, message, handle);
  });

  worker.process.once('exit', (exitCode, signalCode) => {
    lib.instances.release(id);
    // Keep the worker listed until it has disconnected too.
    if (!worker.isConnected()) removeWorker(worker);
    worker.exitedAfterDisconnect = !!worker.exitedAfterDisconnect;
    worker.state = 'dead';
    worker.emit('exit', exitCode, signalCode);
    cluster.emit('exit', worker, exitCode, signalCode);
  });

  worker.process.once('disconnect', () => {
    if (worker.isDead()) removeWorker(worker);
    worker.exitedAfterDisconnect = !!worker.exitedAfterDisconnect;
    worker.state = 'disconnected';
    worker.emit('disconnect');
    cluster.emit('disconnect', worker);
  });

  lib.readiness.track(cluster, worker, {
    waitReady: settings.waitReady === true,
    want: predecessor === null ? 1 : lib.readiness.listenCount(predecessor),
  });
  if (settings.heartbeatTimeout) lib.watchdog.watch(cluster, worker, settings.heartbeatTimeout);
  lib.selfAccepted.track(worker);

  if (workerProcess._launching) live.set(id, worker);
  process.nextTick(emitForkNT, worker);
  cluster.workers[worker.id] = worker;
  return worker;
}

// Built on first call (its queue of reloads lives in the closure).
let reloader = null;
cluster.reload = function reload(options) {
  if (reloader === null) reloader = lib.reload.createReload(cluster, forkWorker);
  return reloader(options);
};

// For development: a rolling reload when a file under `paths` changes.
cluster.watch = function watch(paths, options) {
  return lib.watching.watch(cluster, paths, options);
};

// Our additions: the primary's and every live worker's figures, as an
// object and in Prometheus text format.
cluster.stats = function stats() {
  return lib.statistics.stats(cluster, started, forkedAt);
};

cluster.metrics = function metrics() {
  return lib.statistics.metrics(lib.statistics.stats(cluster, started, forkedAt));
};

// How many workers fit here: CPU affinity and cgroup quota, or
// NATIVE_CLUSTER_WORKERS.
cluster.availableParallelism = function availableParallelism() {
  return lib.parallelism.availableParallelism();
};

function emitForkNT(worker) {
  cluster.emit('fork', worker);
}

cluster.disconnect = function disconnect(cb) {
  const workers = Object.values(cluster.workers);
  if (workers.length === 0) {
    process.nextTick(() => intercom.emit('disconnect'));
  } else {
    for (const worker of workers) {
      if (worker.isConnected()) worker.disconnect();
    }
  }
  if (typeof cb === 'function') intercom.once('disconnect', cb);
};

function onEvents(batch) {
  for (const ev of batch) {
    if (ev.kind === 'listen') {
      lib.roundRobin.listenForWorkers(ev.id, ev.info);
      continue;
    }
    const worker = live.get(ev.id);
    if (worker === undefined) {
      if (ev.fd != null) native.closeFd(ev.fd);
      continue;
    }
    const proc = worker.process;
    switch (ev.kind) {
      case 'online':
        proc._settlePid();
        worker.state = 'online';
        worker.emit('online');
        cluster.emit('online', worker);
        break;
      case 'listening': {
        const m = JSON.parse(ev.info);
        const info = { addressType: m.addressType, address: m.address, port: m.port, fd: m.fd };
        worker.state = 'listening';
        worker.emit('listening', info);
        cluster.emit('listening', worker, info);
        break;
      }
      case 'messages':
        proc._onMessages(ev.data, ev.lengths, ev.json);
        break;
      case 'message':
        proc._onMessage(ev.data, ev.fd);
        break;
      case 'internal':
        proc._onInternal(ev.data);
        break;
      case 'exitedAfterDisconnect':
        worker.exitedAfterDisconnect = true;
        break;
      case 'written':
        proc._onWritten(ev.count, ev.bytes);
        break;
      case 'disconnect':
        proc._onDisconnect();
        break;
      case 'exit':
        live.delete(ev.id);
        proc._onExit(ev.code, ev.signal);
        break;
      case 'error':
        proc._protocolError(lib.errors.makeError(Error, ev.errorCode, ev.message));
        break;
      case 'spawnFailed':
        live.delete(ev.id);
        proc._launchFailed(ev.errorCode);
        break;
      case 'warning':
        process.emitWarning(ev.message, ev.errorCode);
        break;
      default:
        unknownEvent(ev);
        break;
    }
  }
}

// An event kind this facade does not know: the addon and the facade
// disagree (a mismatched build). Said loudly, once per kind, and the rest
// of the batch still runs.
const reportedKinds = new Set();
function unknownEvent(ev) {
  if (reportedKinds.has(ev.kind)) return;
  reportedKinds.add(ev.kind);
  process.emitWarning(`native-cluster: the addon sent an event of unknown kind ${JSON.stringify(ev.kind)}`,
    { code: 'ERR_NATIVE_CLUSTER_UNKNOWN_EVENT' });
}

// Primary-side methods, as node:cluster adds them.
Worker.prototype.disconnect = function disconnect() {
  this.exitedAfterDisconnect = true;
  if (this.process.connected) native.disconnect(this.id);
  removeWorker(this);
  return this;
};

Worker.prototype.destroy = function destroy(signo) {
  const signal = signo || 'SIGTERM';
  this.process.kill(signal);
};
