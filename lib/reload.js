'use strict';
// cluster.reload([options]): replaces every worker (or those in `workers`)
// without downtime. For each (`concurrency` at a time) a replacement is
// forked first, with its predecessor's fork env and NODE_APP_INSTANCE;
// once it is ready (see readiness.js) the old worker's gate closes (no new
// connections where the primary accepts them), it is disconnected (it
// finishes what it has and exits), and killed after `killTimeout` if it
// has not. A replacement that exits or is not ready within `readyTimeout`
// stops the reload: it is killed, the promise rejects, and the old workers
// not yet replaced keep serving.

const errors = require('./errors.js');
const native = require('./native.js');
const Worker = require('./worker.js');
const gate = require('./gate.js');
const instances = require('./instances.js');
const readiness = require('./readiness.js');

const DEFAULTS = { concurrency: 1, readyTimeout: 30000, killTimeout: 5000, workers: undefined };

function validate(options) {
  if (options === undefined) return { ...DEFAULTS };
  if (options === null || typeof options !== 'object') {
    throw errors.ERR_INVALID_ARG_TYPE('options', 'Object', options);
  }
  const out = { ...DEFAULTS };
  if (options.workers !== undefined) {
    if (!Array.isArray(options.workers)) {
      throw errors.ERR_INVALID_ARG_TYPE('options.workers', 'array of Worker', options.workers);
    }
    const i = options.workers.findIndex((w) => !(w instanceof Worker));
    if (i >= 0) throw errors.ERR_INVALID_ARG_TYPE(`options.workers[${i}]`, 'Worker', options.workers[i]);
    out.workers = options.workers;
  }
  for (const [key, min] of [['concurrency', 1], ['readyTimeout', 0], ['killTimeout', 0]]) {
    const value = options[key];
    errors.validateInteger(value, `options.${key}`, min);
    if (value !== undefined) out[key] = value;
  }
  return out;
}

const { SCHED_NONE, SCHED_REUSEPORT } = require('./policies.js');

const DRAIN_POLL_MS = 10;
const DRAIN_LIMIT_MS = 1000;
// After the last handoff was answered (or, where the worker accepts
// itself, after it was asked to stop accepting): time for the worker to
// read the request of a connection it has just accepted. Node 26's http server
// closes a connection with no request read yet as idle when the worker
// disconnects (its client sees ECONNRESET).
const SETTLE_MS = 100;
// Understood by worker_preload.cjs.
const STOP_ACCEPTING = 'NODE_NATIVE_CLUSTER_STOP_ACCEPTING';

// Resolves once no connection handed to the worker waits for its answer
// (or after DRAIN_LIMIT_MS), and the last one had time to be read.
async function handoffsAnswered(worker) {
  const end = Date.now() + DRAIN_LIMIT_MS;
  while (Date.now() < end && !worker.isDead()) {
    const figures = native.stats(DRAIN_LIMIT_MS, false).workers.find((w) => w.id === worker.id);
    if (figures === undefined || figures.inFlight === 0) break;
    await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
  }
  await new Promise((r) => setTimeout(r, SETTLE_MS));
}

// Closes the worker's gate, waits for its handoffs to be answered, then
// disconnects it and kills it if it has not exited after `killTimeout`.
// Under SCHED_NONE and SCHED_REUSEPORT the worker accepts itself: it is
// asked to close its copy of the listening socket first, so that nothing it
// accepts is cut off by the disconnect (the others share a SCHED_NONE
// socket; a SCHED_REUSEPORT socket's queue is the primary's to hand on
// once the worker is gone).
async function retire(worker, killTimeout, policy) {
  if (worker.isDead()) return;
  gate.close(worker, 'retiring');
  const acceptsItself = policy === SCHED_NONE || policy === SCHED_REUSEPORT;
  if (acceptsItself && worker.isConnected()) worker.process.send({ cmd: STOP_ACCEPTING });
  await handoffsAnswered(worker);
  return new Promise((resolve) => {
    if (worker.isDead()) return resolve();
    const timer = setTimeout(() => {
      if (!worker.isDead()) worker.process.kill('SIGKILL');
    }, killTimeout);
    worker.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    if (worker.isConnected()) worker.disconnect();
  });
}

function createReload(cluster, fork) {
  let running = Promise.resolve();

  async function replaceOne(old, opts) {
    const env = { ...(old._forkEnv || {}), NODE_APP_INSTANCE: String(instances.of(old.id) ?? '') };
    if (env.NODE_APP_INSTANCE === '') delete env.NODE_APP_INSTANCE;
    const fresh = fork(env, old);
    const slot = instances.of(fresh.id);
    try {
      await readiness.whenReady(fresh, opts.readyTimeout);
    } catch (err) {
      // It never took the slot over: not a restart of it.
      if (slot !== undefined) instances.withdraw(slot);
      if (!fresh.isDead()) fresh.process.kill('SIGKILL');
      err.worker = fresh;
      throw err;
    }
    const entry = { old: old.id, new: fresh.id, oldPid: old.process._osPid(), newPid: fresh.process._osPid() };
    await retire(old, opts.killTimeout, cluster.schedulingPolicy);
    return entry;
  }

  async function run(opts) {
    const started = Date.now();
    const targets = (opts.workers || Object.values(cluster.workers))
      .filter((w) => !w.isDead() && w.isConnected());
    const replaced = [];
    let failure = null;
    let next = 0;
    const lane = async () => {
      while (failure === null && next < targets.length) {
        const old = targets[next++];
        // Gone meanwhile: whoever restarts it starts the new code anyway.
        if (old.isDead() || !old.isConnected()) continue;
        try {
          replaced.push(await replaceOne(old, opts));
        } catch (err) {
          failure = failure || err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency, targets.length) }, lane));
    const result = { replaced, ms: Date.now() - started };
    if (failure !== null) {
      failure.replaced = replaced;
      failure.ms = result.ms;
      throw failure;
    }
    return result;
  }

  return function reload(options) {
    let opts;
    try {
      opts = validate(options);
    } catch (err) {
      return Promise.reject(err);
    }
    // One reload at a time: a second call starts when the first ends.
    const result = running.then(() => run(opts), () => run(opts));
    running = result.catch(() => {});
    return result;
  };
}

module.exports = { createReload };
