#!/usr/bin/env node
'use strict';
// native-cluster CLI: runs an unmodified server script on N workers with the
// native primary; restarts crashed workers, stops gracefully on SIGINT and
// SIGTERM, replaces workers one at a time on SIGHUP.

const path = require('node:path');
const os = require('node:os');

const DEFAULT_KILL_TIMEOUT = 5000;
const DEFAULT_LISTEN_TIMEOUT = 30000;
const DEFAULT_LISTEN_GRACE = 5000;
const POLICIES = ['rr', 'none', 'reuseport', 'sticky'];
// A worker that crashes within STABLE_MS of its start counts as a repeated
// crash of its slot; the restart delay doubles from BACKOFF_BASE up to
// BACKOFF_MAX.
const STABLE_MS = 10000;
const BACKOFF_BASE = 200;
const BACKOFF_MAX = 15000;

const HELP = `Usage: native-cluster [options] [--] <app> [app args...]

Runs <app>, an unmodified Node.js server script (CommonJS or ES module), on
N worker processes that share its ports; native-cluster's native primary
distributes the connections. In the app, cluster.isWorker is true, so an app
written for node:cluster runs its worker branch.

Options:
  -i, --instances <N|max>   number of workers (default: max, the
                            available parallelism: ${os.availableParallelism()} here)
      --policy <rr|none|reuseport|sticky>
                            rr: the primary accepts connections and hands them
                            to the workers in turn (default); none: the workers
                            accept from a shared socket themselves; reuseport:
                            each worker accepts from its own SO_REUSEPORT
                            socket; sticky: like rr, but one client address
                            always reaches the same worker. Default from
                            NODE_CLUSTER_SCHED_POLICY when set.
      --kill-timeout <ms>   time a disconnected worker gets to exit before
                            SIGKILL (default ${DEFAULT_KILL_TIMEOUT})
      --listen-timeout <ms> time a new worker gets to listen during a reload
                            (default ${DEFAULT_LISTEN_TIMEOUT})
      --listen-grace <ms>   when the last worker of a server (policy rr or
                            sticky) dies, its port stays open this long for
                            the restarted worker: connections wait instead
                            of being refused; 0 closes it at once, as
                            node:cluster does (default ${DEFAULT_LISTEN_GRACE})
  -h, --help                show this help
  -v, --version             print the version

Crashes:
  A worker that exits with a non-zero code or by a signal, without having
  been asked to, is restarted at once. When the same worker keeps crashing
  (each time within ${STABLE_MS / 1000} s of its start) the restarts back off:
  ${BACKOFF_BASE} ms, ${BACKOFF_BASE * 2} ms, ${BACKOFF_BASE * 4} ms, ... up to ${BACKOFF_MAX / 1000} s.
  A worker that exits with code 0 on its own, or disconnects itself, is not
  restarted; when no worker is left, native-cluster exits with code 0.

Signals (to the native-cluster process):
  SIGINT, SIGTERM  graceful stop: each worker is disconnected (it closes its
                   servers, finishes the connections in progress and exits);
                   workers still running after --kill-timeout get SIGKILL.
                   Exits 0 when every worker left by itself, 1 otherwise.
                   A second signal kills the workers at once.
  SIGHUP           reload without downtime: the workers are replaced one at
                   a time, each by a new worker forked first; the old one is
                   disconnected once the new one listens (on as many servers
                   as the old one did). A new worker that crashes or does not
                   listen within --listen-timeout stops the reload; the
                   remaining old workers keep serving.

Workers run with this process's Node options and environment, e.g.
  node --max-old-space-size=512 node_modules/.bin/native-cluster app.js
  NODE_OPTIONS=--enable-source-maps npx native-cluster app.js

Status lines go to stderr, prefixed with [native-cluster]; the app's own
output passes through unchanged.

Examples:
  npx native-cluster app.js
  npx native-cluster -i 4 --policy none -- server.mjs --port 8080
  kill -HUP <native-cluster pid>     # reload the app after a deploy
`;

class UsageError extends Error {}

function parseArgs(argv) {
  const opts = {
    instances: 'max',
    policy: undefined,
    killTimeout: DEFAULT_KILL_TIMEOUT,
    listenTimeout: DEFAULT_LISTEN_TIMEOUT,
    listenGrace: DEFAULT_LISTEN_GRACE,
    help: false,
    version: false,
    app: undefined,
    args: [],
  };
  const takesValue = {
    '-i': 'instances',
    '--instances': 'instances',
    '--policy': 'policy',
    '--kill-timeout': 'killTimeout',
    '--listen-timeout': 'listenTimeout',
    '--listen-grace': 'listenGrace',
  };
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      i++;
      break;
    }
    if (arg === '-h' || arg === '--help') {
      opts.help = true;
      continue;
    }
    if (arg === '-v' || arg === '--version') {
      opts.version = true;
      continue;
    }
    if (!arg.startsWith('-') || arg === '-') break;
    let name = arg;
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      name = arg.slice(0, eq);
      value = arg.slice(eq + 1);
    } else if (/^-i./.test(arg)) {
      name = '-i';
      value = arg.slice(arg[2] === '=' ? 3 : 2);
    }
    const key = takesValue[name];
    if (key === undefined) throw new UsageError(`unknown option ${arg}`);
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`option ${name} needs a value`);
      value = argv[++i];
    }
    opts[key] = value;
  }
  if (i < argv.length) {
    opts.app = argv[i];
    opts.args = argv.slice(i + 1);
  }
  if (opts.help || opts.version) return opts;
  if (opts.app === undefined) throw new UsageError('no app given');

  if (opts.instances === 'max') {
    opts.instances = os.availableParallelism();
  } else if (/^[1-9]\d*$/.test(opts.instances)) {
    opts.instances = Number(opts.instances);
  } else {
    throw new UsageError(`-i/--instances takes a positive integer or max, not ${JSON.stringify(opts.instances)}`);
  }
  if (opts.policy === undefined) {
    const fromEnv = process.env.NODE_CLUSTER_SCHED_POLICY;
    opts.policy = POLICIES.includes(fromEnv) ? fromEnv : 'rr';
  }
  if (!POLICIES.includes(opts.policy)) {
    throw new UsageError(`--policy takes ${POLICIES.join(', ')}, not ${JSON.stringify(opts.policy)}`);
  }
  for (const [key, flag] of [['killTimeout', '--kill-timeout'], ['listenTimeout', '--listen-timeout'], ['listenGrace', '--listen-grace']]) {
    if (typeof opts[key] === 'string') {
      if (!/^\d+$/.test(opts[key])) throw new UsageError(`${flag} takes milliseconds, not ${JSON.stringify(opts[key])}`);
      opts[key] = Number(opts[key]);
    }
  }
  return opts;
}

function log(message) {
  process.stderr.write(`[native-cluster] ${message}\n`);
}

function main(argv) {
  let opts;
  try {
    opts = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`native-cluster: ${err.message}\nRun native-cluster --help for usage.\n`);
    process.exitCode = 2;
    return;
  }
  if (opts.help) {
    process.stdout.write(HELP);
    return;
  }
  if (opts.version) {
    process.stdout.write(`${require('../package.json').version}\n`);
    return;
  }

  const app = path.resolve(opts.app);
  try {
    require.resolve(app);
  } catch {
    process.stderr.write(`native-cluster: cannot find ${opts.app} (${app})\n`);
    process.exitCode = 2;
    return;
  }

  const cluster = require('../');
  run(cluster, app, opts);
}

function run(cluster, app, opts) {
  cluster.schedulingPolicy = cluster[`SCHED_${opts.policy.toUpperCase()}`];
  cluster.setupPrimary({ exec: app, args: opts.args, listenGrace: opts.listenGrace });

  // One slot per requested worker: its current worker, and its crash record.
  const slots = [];
  // Every worker not yet exited, with what we know about it.
  const live = new Map();
  let stopping = false;
  let forced = false;
  let killTimer = null;
  let reloading = false;
  let reloadAgain = false;
  let announced = false;

  const name = (w) => `worker ${w.id} (pid ${w.process.pid})`;
  const describeExit = (code, signal) => (signal ? `signal ${signal}` : `code ${code}`);

  function fork(slot) {
    const worker = cluster.fork();
    const info = { slot, listening: 0, startedAt: Date.now() };
    live.set(worker, info);
    // These run before any listener added later (reload's).
    worker.on('online', () => {
      if (info.slot) info.slot.online = true;
      if (!announced && slots.every((s) => s.online)) {
        announced = true;
        log(`all ${slots.length} worker${slots.length === 1 ? '' : 's'} online`);
      }
    });
    worker.on('listening', (address) => {
      if (++info.listening === 1) log(`${name(worker)} listening on ${formatAddress(address)}`);
    });
    worker.on('error', (err) => log(`${name(worker)}: ${err.message}`));
    if (slot) {
      slot.worker = worker;
      slot.timer = null;
    }
    return worker;
  }

  cluster.on('exit', (worker, code, signal) => {
    const info = live.get(worker);
    live.delete(worker);
    if (!info) return;
    if (stopping) {
      finishIfDone();
      return;
    }
    const slot = info.slot;
    // Replaced (reload) or a reload candidate: the reload deals with it.
    if (!slot || slot.worker !== worker) return;
    slot.worker = null;
    if (worker.exitedAfterDisconnect || (code === 0 && !signal)) {
      log(`${name(worker)} exited (${describeExit(code, signal)}); not restarting it`);
      finishIfDone();
      return;
    }
    slot.crashes = Date.now() - info.startedAt < STABLE_MS ? slot.crashes + 1 : 1;
    const delay = slot.crashes <= 1 ? 0 : Math.min(BACKOFF_BASE * 2 ** (slot.crashes - 2), BACKOFF_MAX);
    log(`${name(worker)} crashed (${describeExit(code, signal)}); ` +
      (delay === 0 ? 'restarting it' : `restarting it in ${delay} ms (crash ${slot.crashes} in a row)`));
    slot.timer = setTimeout(() => fork(slot), delay);
  });

  // Without workers or pending restarts, and no reload under way: done.
  function finishIfDone() {
    if (stopping) {
      if (live.size > 0) return;
      clearTimeout(killTimer);
      log(forced ? 'all workers gone (some killed); exiting' : 'all workers stopped; exiting');
      process.exit(forced ? 1 : 0);
    }
    if (live.size > 0 || reloading || slots.some((s) => s.timer)) return;
    log('no workers left; exiting');
    process.exit(0);
  }

  function killAll() {
    for (const worker of live.keys()) {
      if (worker.isDead()) continue;
      forced = true;
      log(`${name(worker)} still running; SIGKILL`);
      worker.process.kill('SIGKILL');
    }
  }

  function stop(signal) {
    if (stopping) {
      log(`${signal} again: killing the workers now`);
      killAll();
      return;
    }
    stopping = true;
    for (const slot of slots) clearTimeout(slot.timer);
    log(`${signal}: stopping ${live.size} worker${live.size === 1 ? '' : 's'} (SIGKILL after ${opts.killTimeout} ms)`);
    for (const worker of live.keys()) {
      if (worker.isConnected()) worker.disconnect();
    }
    killTimer = setTimeout(killAll, opts.killTimeout);
    finishIfDone();
  }

  // Forks a replacement for slot's worker, waits until it listens on as
  // many servers as the old one (or is online, for a worker that never
  // listened), then disconnects the old one and waits for it to exit.
  async function replace(slot, old) {
    const want = live.get(old)?.listening || 0;
    const fresh = fork(null);
    const outcome = await new Promise((resolve) => {
      const timer = setTimeout(() => done('timeout'), opts.listenTimeout);
      const check = () => {
        const info = live.get(fresh);
        if (info && info.listening >= want) done('ok');
      };
      const onExit = (code, signal) => done(`exit: ${describeExit(code, signal)}`);
      const event = want > 0 ? 'listening' : 'online';
      fresh.on(event, check);
      fresh.once('exit', onExit);
      function done(result) {
        clearTimeout(timer);
        fresh.off(event, check);
        fresh.off('exit', onExit);
        resolve(result);
      }
    });
    if (stopping) return false;
    if (outcome !== 'ok') {
      if (outcome === 'timeout') {
        log(`${name(fresh)} did not listen within ${opts.listenTimeout} ms; killing it`);
        fresh.process.kill('SIGKILL');
      } else {
        log(`${name(fresh)} failed (${outcome.slice(6)})`);
      }
      return false;
    }
    live.get(fresh).slot = slot;
    if (slot.worker !== old) {
      // The old one crashed meanwhile: the new one takes its place, instead
      // of its pending or already started restart.
      const restarted = slot.worker;
      clearTimeout(slot.timer);
      slot.worker = fresh;
      slot.timer = null;
      if (restarted) await retire(restarted);
      return true;
    }
    slot.worker = fresh;
    slot.crashes = 0;
    log(`${name(fresh)} replaces ${name(old)}`);
    await retire(old);
    return true;
  }

  function retire(worker) {
    return new Promise((resolve) => {
      if (worker.isDead()) return resolve();
      const timer = setTimeout(() => {
        if (worker.isDead()) return;
        log(`${name(worker)} did not exit within ${opts.killTimeout} ms; SIGKILL`);
        worker.process.kill('SIGKILL');
      }, opts.killTimeout);
      worker.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      if (worker.isConnected()) worker.disconnect();
    });
  }

  async function reload() {
    if (stopping) return;
    if (reloading) {
      reloadAgain = true;
      log('SIGHUP: a reload is under way; another one follows it');
      return;
    }
    reloading = true;
    do {
      reloadAgain = false;
      const targets = slots.filter((s) => s.worker);
      log(`SIGHUP: replacing ${targets.length} worker${targets.length === 1 ? '' : 's'} one at a time`);
      let replaced = 0;
      let failed = false;
      for (const slot of targets) {
        if (stopping) break;
        if (!slot.worker) continue; // crashed meanwhile: its restart runs the new code
        if (!(await replace(slot, slot.worker))) {
          failed = true;
          break;
        }
        replaced++;
      }
      if (stopping) break;
      if (failed) log(`reload stopped after ${replaced} of ${targets.length}; the other workers keep running`);
      else log(`reload done: ${replaced} worker${replaced === 1 ? '' : 's'} replaced`);
    } while (reloadAgain && !stopping);
    reloading = false;
    if (!stopping) finishIfDone();
  }

  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGHUP', () => {
    reload().catch((err) => log(`reload failed: ${err.stack || err}`));
  });

  log(`primary ${process.pid}: starting ${opts.instances} worker${opts.instances === 1 ? '' : 's'} ` +
    `of ${path.relative(process.cwd(), app) || app} (policy ${opts.policy})`);
  for (let i = 0; i < opts.instances; i++) {
    slots.push({ worker: null, crashes: 0, timer: null, online: false });
  }
  for (const slot of slots) fork(slot);
}

function formatAddress(a) {
  if (!a) return '?';
  if (a.addressType === -1) return a.address;
  const host = a.address == null || a.address === '' ? '*' :
    (a.addressType === 6 || String(a.address).includes(':') ? `[${a.address}]` : a.address);
  const udp = a.addressType === 'udp4' || a.addressType === 'udp6' ? ' (udp)' : '';
  return `${host}:${a.port}${udp}`;
}

if (require.main === module) main(process.argv.slice(2));

module.exports = { parseArgs, HELP };
