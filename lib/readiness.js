'use strict';
// When a worker is ready for its share of the load: then 'ready' is emitted
// on the worker and on cluster. By default, once it listens on as many
// servers as it is expected to (its predecessor's count when it replaces
// one in a reload, else one; a predecessor that never listened: once it
// is online). With setupPrimary({ waitReady: true }), once it sends
// 'ready' (process.send('ready'), PM2's wait_ready habit); until then the
// primary hands it no connections.

const gate = require('./gate.js');

const state = new WeakMap(); // worker -> { ready, listening, want }

function track(cluster, worker, { waitReady, want = 1 }) {
  const s = { ready: false, listening: 0, want };
  state.set(worker, s);
  const becomeReady = () => {
    if (s.ready || worker.isDead()) return;
    s.ready = true;
    gate.open(worker, 'ready');
    worker.emit('ready');
    cluster.emit('ready', worker);
  };
  worker.on('listening', () => {
    s.listening++;
    if (!waitReady && s.listening >= s.want) becomeReady();
  });
  if (waitReady) {
    gate.close(worker, 'ready');
    worker.on('message', (message) => {
      if (message === 'ready') becomeReady();
    });
  } else if (want === 0) {
    worker.on('online', becomeReady);
  }
}

function isReady(worker) {
  return state.get(worker)?.ready === true;
}

// How many times the worker listened (what its replacement must match).
function listenCount(worker) {
  return state.get(worker)?.listening || 0;
}

// Resolves once the worker is ready; rejects if it exits first or is not
// ready within `timeout` ms.
function whenReady(worker, timeout) {
  return new Promise((resolve, reject) => {
    if (isReady(worker)) return resolve();
    const done = (err) => {
      clearTimeout(timer);
      worker.off('ready', onReady);
      worker.off('exit', onExit);
      if (err) reject(err);
      else resolve();
    };
    const onReady = () => done();
    const { makeError } = require('./errors.js');
    const onExit = (code, signal) => done(Object.assign(makeError(Error, 'ERR_CLUSTER_WORKER_EXITED',
      `worker ${worker.id} exited (${signal ? `signal ${signal}` : `code ${code}`}) before it was ready`),
    { exitCode: code, signalCode: signal }));
    const timer = setTimeout(() => done(makeError(Error, 'ERR_CLUSTER_READY_TIMEOUT',
      `worker ${worker.id} was not ready within ${timeout} ms`)), timeout);
    worker.on('ready', onReady);
    worker.on('exit', onExit);
  });
}

module.exports = { track, isReady, listenCount, whenReady };
