'use strict';
// What the CLI does with a cluster once started: one slot per worker,
// restarts with back-off and --max-restarts, the watchdog's and
// --max-memory's replacements, SIGHUP reloads, scale, graceful stop and
// its exit status, the control socket's commands. What must hold before
// the first fork (name, pidfile, metrics port) is preflight.js's.
// Everything a program would want itself is the library's (reload,
// readiness, watchdog, stats); this file decides when to use it.

const os = require('node:os');
const path = require('node:path');
const { claim } = require('./preflight.js');
const { STABLE_MS, BACKOFF_BASE, BACKOFF_MAX, MAX_WORKERS } = require('./args.js');
const { watchFiles } = require('./watch.js');

function log(message) {
  process.stderr.write(`[native-cluster] ${message}\n`);
}

function run(cluster, app, opts) {
  cluster.schedulingPolicy = cluster[`SCHED_${opts.policy.toUpperCase()}`];
  cluster.setupPrimary({
    exec: app,
    args: opts.args,
    listenGrace: opts.listenGrace,
    // The workers out of the terminal's foreground process group: Ctrl-C's
    // SIGINT reaches this process only, which drains them as on SIGTERM.
    detached: true,
    ...(opts.unresponsiveTimeout > 0 ? { heartbeatTimeout: opts.unresponsiveTimeout } : {}),
  });
  if (opts.watch !== undefined) watchFiles(cluster, app, opts.watch, reload, log);

  // One slot per requested worker: its current worker, and its crash record.
  const slots = [];
  // Every worker not yet exited, with what we know about it.
  const live = new Map();
  let starting = true;
  let stopping = false;
  // Why the stop exits 1 although every worker left by itself.
  let gaveUp = null;
  // How the stop went: workers killed (and why), workers that exited
  // without being drained (a crash or a signal of their own).
  let killed = 0;
  let killedWhy = '';
  let unclean = 0;
  let killTimer = null;
  let reloading = false;
  let reloadAgain = false;
  let announced = false;
  // Restarts (crashes, --max-memory replacements) within the last
  // --restart-window ms, for --max-restarts.
  const restarts = [];

  const name = (w) => `worker ${w.id} (pid ${w.process.pid})`;
  const describeExit = (code, signal) => (signal ? `signal ${signal}` : `code ${code}`);

  function fork(slot) {
    const worker = cluster.fork();
    live.set(worker, { slot, listening: 0, startedAt: Date.now(), overMemory: 0 });
    if (slot) {
      slot.worker = worker;
      slot.timer = null;
    }
    return worker;
  }

  // Every worker, ours or a reload's replacement: status lines.
  cluster.on('fork', (worker) => {
    if (!live.has(worker)) live.set(worker, { slot: null, listening: 0, startedAt: Date.now(), overMemory: 0 });
    const info = live.get(worker);
    // Ready: listening (online alone says nothing: an app that throws at
    // start is online first).
    worker.on('ready', () => {
      info.ready = true;
      if (announced || starting || stopping) return;
      if (slots.every((s) => s.worker && !s.worker.isDead() && live.get(s.worker)?.ready)) {
        announced = true;
        log(slots.length === 1 ? 'the worker is ready' : `all ${slots.length} workers ready`);
      }
    });
    worker.on('listening', (address) => {
      if (++info.listening === 1) log(`${name(worker)} listening on ${formatAddress(address)}`);
    });
    worker.on('error', (err) => log(`${name(worker)}: ${err.message}`));
  });

  // A reload's replacement (or the watchdog's) takes over a slot.
  function adopt(worker, slot) {
    const info = live.get(worker);
    if (info) info.slot = slot;
    slot.worker = worker;
    slot.crashes = 0;
    if (worker.isDead()) {
      // It died before it was adopted: restart the slot as after a crash.
      slot.worker = null;
      slot.timer = setTimeout(() => fork(slot), 0);
    }
  }

  // --max-memory: the library's reload of this one worker (its successor
  // first, then it is drained), then the slot follows.
  function replaceGracefully(slot, old, why) {
    if (stopping || reloading || slot.replacing) return;
    // A limit below the app's own baseline would replace it for ever.
    if (overMaxRestarts(old, why)) return;
    slot.replacing = true;
    log(`${name(old)} ${why}; replacing it`);
    cluster.reload({ workers: [old], readyTimeout: opts.listenTimeout, killTimeout: opts.killTimeout })
      .then(({ replaced }) => {
        for (const r of replaced) {
          const fresh = cluster.workers[r.new];
          if (fresh && slot.worker === old) adopt(fresh, slot);
        }
      }, (err) => log(`replacing ${name(old)} failed: ${err.message}`))
      .finally(() => { slot.replacing = false; });
  }

  if (opts.unresponsiveTimeout > 0) {
    cluster.on('unresponsive', (worker, silentMs) => {
      const slot = live.get(worker)?.slot;
      const info = live.get(worker);
      if (!info || !info.slot || info.slot.worker !== worker || stopping) return;
      // Killed first: its slot (NODE_APP_INSTANCE) is free for the
      // replacement, forked as soon as it is gone.
      log(`${name(worker)} unresponsive for ${silentMs} ms; replacing it`);
      info.hung = true;
      worker.process.kill('SIGKILL');
    });
  }

  if (opts.maxMemory > 0) {
    // Sampled every second; two samples in a row over the limit, so that a
    // short peak before a GC does not cost a worker.
    // RSS from cluster.stats() (read from /proc on the core's I/O thread).
    setInterval(() => {
      const rssOf = new Map(cluster.stats().workers.map((w) => [w.id, w.rss]));
      for (const [worker, info] of live) {
        if (!info.slot || info.slot.worker !== worker || worker.isDead()) continue;
        const rss = (rssOf.get(worker.id) ?? NaN) / 1048576;
        info.overMemory = rss > opts.maxMemory ? info.overMemory + 1 : 0;
        if (info.overMemory >= 2) {
          info.overMemory = 0;
          replaceGracefully(info.slot, worker, `uses ${Math.round(rss)} MB (over --max-memory ${opts.maxMemory})`);
        }
      }
    }, 1000).unref();
  }

  cluster.on('exit', (worker, code, signal) => {
    const info = live.get(worker);
    live.delete(worker);
    if (!info) return;
    if (stopping) {
      if (info.killed && signal === 'SIGKILL') {
        killed++;
      } else if (code !== 0 || signal) {
        unclean++;
        log(`${name(worker)} exited (${describeExit(code, signal)}) while stopping`);
      }
      finishIfDone();
      return;
    }
    const slot = info.slot;
    // Replaced (reload) or a reload candidate: the reload deals with it.
    if (!slot || slot.worker !== worker) return;
    // Drained by the reload under way, which gives its slot the successor.
    if ((reloading || slot.replacing) && worker.exitedAfterDisconnect) return;
    slot.worker = null;
    if (info.hung) {
      fork(slot);
      return;
    }
    if (worker.exitedAfterDisconnect || (code === 0 && !signal)) {
      log(`${name(worker)} exited (${describeExit(code, signal)}); not restarting it`);
      finishIfDone();
      return;
    }
    if (overMaxRestarts(worker, `crashed (${describeExit(code, signal)})`)) return;
    const now = Date.now();
    slot.crashes = now - info.startedAt < STABLE_MS ? slot.crashes + 1 : 1;
    const delay = slot.crashes <= 1 ? 0 : Math.min(BACKOFF_BASE * 2 ** (slot.crashes - 2), BACKOFF_MAX);
    log(`${name(worker)} crashed (${describeExit(code, signal)}); ` +
      (delay === 0 ? 'restarting it' : `restarting it in ${delay} ms (crash ${slot.crashes} in a row)`));
    slot.timer = setTimeout(() => fork(slot), delay);
  });

  // Counts a restart of `worker`'s slot; more than --max-restarts within
  // --restart-window: a graceful stop that exits 1, and true.
  function overMaxRestarts(worker, what) {
    const now = Date.now();
    restarts.push(now);
    while (restarts.length > 0 && restarts[0] <= now - opts.restartWindow) restarts.shift();
    if (opts.maxRestarts === undefined || restarts.length <= opts.maxRestarts) return false;
    log(`${name(worker)} ${what}: ${restarts.length} restarts within ` +
      `${opts.restartWindow} ms, over --max-restarts ${opts.maxRestarts}; stopping`);
    gaveUp = 'too many restarts';
    stop('giving up');
    return true;
  }

  // Without workers or pending restarts, and no reload under way: done.
  // A stop exits 0 only when every worker left gracefully: a killed one
  // had its requests in progress cut.
  function finishIfDone() {
    if (stopping) {
      if (live.size > 0) return;
      clearTimeout(killTimer);
      const cut = [];
      if (killed > 0) cut.push(`${killed} killed ${killedWhy} (requests in progress, if any, were cut)`);
      if (unclean > 0) cut.push(`${unclean} exited abnormally`);
      const code = cut.length > 0 || gaveUp ? 1 : 0;
      log(`all workers ${cut.length > 0 ? `gone: ${cut.join('; ')}` : 'stopped'}; exiting` +
        (code ? ` with code 1${gaveUp ? ` (${gaveUp})` : ''}` : ''));
      process.exit(code);
    }
    if (live.size > 0 || starting || reloading || slots.some((s) => s.timer)) return;
    log('no workers left; exiting');
    process.exit(0);
  }

  function killAll(why) {
    for (const [worker, info] of live) {
      if (worker.isDead()) continue;
      info.killed = true;
      killedWhy = why;
      log(`${name(worker)} still running; SIGKILL`);
      worker.process.kill('SIGKILL');
    }
  }

  function stop(signal) {
    if (stopping) {
      log(`${signal} again: killing the workers now`);
      killAll(`on a second ${signal}`);
      return;
    }
    stopping = true;
    for (const slot of slots) clearTimeout(slot.timer);
    log(`${signal}: stopping ${live.size} worker${live.size === 1 ? '' : 's'} (SIGKILL after ${opts.killTimeout} ms)`);
    for (const worker of live.keys()) {
      if (worker.isConnected()) worker.disconnect();
    }
    killTimer = setTimeout(killAll, opts.killTimeout, `after --kill-timeout ${opts.killTimeout} ms`);
    finishIfDone();
  }

  // SIGHUP: the library's reload (one worker at a time, each replacement
  // ready before its predecessor is drained), then the slots follow.
  // Resolves with the outcome of the last reload cycle ({ replaced, error }).
  let reloadDone = null;
  function reload(why) {
    if (stopping) return Promise.resolve({ replaced: [], error: 'reload refused: the cluster is stopping' });
    if (reloading) {
      reloadAgain = true;
      log(`${why}: a reload is under way; another one follows it`);
      return reloadDone;
    }
    reloadDone = reloadLoop(why);
    return reloadDone;
  }

  async function reloadLoop(why) {
    reloading = true;
    let outcome;
    do {
      reloadAgain = false;
      const n = slots.filter((s) => s.worker).length;
      log(`${why}: replacing ${n} worker${n === 1 ? '' : 's'} one at a time`);
      let replaced = [];
      let failure = null;
      try {
        replaced = (await cluster.reload({ readyTimeout: opts.listenTimeout, killTimeout: opts.killTimeout })).replaced;
      } catch (err) {
        failure = err;
        replaced = err.replaced || [];
      }
      for (const r of replaced) {
        const fresh = cluster.workers[r.new];
        const slot = slots.find((s) => s.worker && s.worker.id === r.old);
        log(`worker ${r.new} (pid ${r.newPid}) replaces worker ${r.old} (pid ${r.oldPid})`);
        if (!slot || !fresh) continue;
        adopt(fresh, slot);
      }
      if (stopping) {
        outcome = { replaced, error: 'reload interrupted: the cluster is stopping' };
        break;
      }
      if (failure) {
        log(`${failure.message}; reload stopped after ${replaced.length} of ${n}, the other workers keep running`);
      } else {
        log(`reload done: ${replaced.length} worker${replaced.length === 1 ? '' : 's'} replaced`);
      }
      outcome = { replaced, error: failure ? failure.message : null };
    } while (reloadAgain && !stopping);
    reloading = false;
    if (!stopping) finishIfDone();
    return outcome;
  }

  // `scale n`: new slots get a worker each; the highest slots beyond n are
  // drained and dropped.
  function scale(n) {
    if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS) {
      throw new Error(`scale takes 1 to ${MAX_WORKERS} workers, not ${JSON.stringify(n)}`);
    }
    if (stopping) throw new Error('stopping');
    while (slots.length < n) {
      const slot = { worker: null, crashes: 0, timer: null };
      slots.push(slot);
      fork(slot);
    }
    while (slots.length > n) {
      const slot = slots.pop();
      clearTimeout(slot.timer);
      const worker = slot.worker;
      if (worker && !worker.isDead()) {
        const info = live.get(worker);
        if (info) info.slot = null;
        if (worker.isConnected()) worker.disconnect();
        setTimeout(() => { if (!worker.isDead()) worker.process.kill('SIGKILL'); }, opts.killTimeout).unref();
      }
    }
    log(`scaled to ${n} worker${n === 1 ? '' : 's'}`);
    return { workers: n };
  }

  // What `native-cluster status` shows: stats(), with CPU% over 200 ms.
  async function status() {
    const before = cluster.stats();
    await new Promise((r) => setTimeout(r, 200));
    const after = cluster.stats();
    const cpu = (w) => {
      const b = before.workers.find((x) => x.id === w.id);
      if (!b || !b.cpu || !w.cpu) return null;
      return Math.round(((w.cpu.user + w.cpu.system) - (b.cpu.user + b.cpu.system)) / 2 * 10) / 10;
    };
    return {
      name: opts.name,
      app: path.relative(process.cwd(), app) || app,
      primary: after.primary,
      workers: after.workers.map((w) => ({ ...w, cpuPercent: cpu(w) })),
    };
  }

  async function command(req) {
    switch (req.cmd) {
      case 'status': return status();
      case 'reload': {
        const outcome = await reload('control: reload');
        if (outcome.error) throw new Error(outcome.error);
        return { replaced: outcome.replaced };
      }
      case 'scale': return scale(req.workers);
      case 'stop': setImmediate(() => stop('control: stop')); return { stopping: true, killTimeout: opts.killTimeout };
      default: throw new Error(`unknown command ${JSON.stringify(req.cmd)}`);
    }
  }

  // Stop with the process that started us (npx does not forward SIGTERM).
  try {
    const native = require('../../lib/native.js');
    if (!native.parentDeathSignal(os.constants.signals.SIGTERM, process.ppid)) {
      process.nextTick(() => stop('parent gone'));
    }
  } catch (err) {
    log(`cannot follow the parent process: ${err.message}`);
  }

  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGHUP', () => {
    reload('SIGHUP').catch((err) => log(`reload failed: ${err.stack || err}`));
  });

  // One fork per turn of the event loop: a signal during a long start-up
  // is handled between two forks, and stops the start-up.
  function startWorkers() {
    if (opts.sizing) log(opts.sizing);
    log(`primary ${process.pid}: starting ${opts.instances} worker${opts.instances === 1 ? '' : 's'} ` +
      `of ${path.relative(process.cwd(), app) || app} (policy ${opts.policy})`);
    for (let i = 0; i < opts.instances; i++) slots.push({ worker: null, crashes: 0, timer: null });
    let next = 0;
    const forkNext = () => {
      if (stopping) return;
      while (next < slots.length && (slots[next].worker || slots[next].timer)) next++;
      if (next < slots.length) {
        fork(slots[next++]);
        setImmediate(forkNext);
        return;
      }
      starting = false;
      finishIfDone();
    };
    forkNext();
  }

  claim(opts, { handle: command, metrics: () => cluster.metrics(), log }).then(() => {
    if (!stopping) startWorkers();
  }, (err) => {
    log(err.message);
    process.exit(1);
  });
}

function formatAddress(a) {
  if (!a) return '?';
  if (a.addressType === -1) return a.address;
  const host = a.address == null || a.address === '' ? '*' :
    (a.addressType === 6 || String(a.address).includes(':') ? `[${a.address}]` : a.address);
  const udp = a.addressType === 'udp4' || a.addressType === 'udp6' ? ' (udp)' : '';
  return `${host}:${a.port}${udp}`;
}

module.exports = { run, log };
