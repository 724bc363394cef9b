#!/usr/bin/env node
'use strict';
// native-cluster CLI: runs an unmodified server script on N workers with the
// native primary; restarts crashed workers, stops gracefully on SIGINT and
// SIGTERM, replaces workers one at a time on SIGHUP.

const fs = require('node:fs');
const control = require('../lib/control.js');
const path = require('node:path');
const os = require('node:os');

const DEFAULT_KILL_TIMEOUT = 5000;
const DEFAULT_LISTEN_TIMEOUT = 30000;
const DEFAULT_LISTEN_GRACE = 5000;
const DEFAULT_RESTART_WINDOW = 60000;
const POLICIES = ['rr', 'none', 'reuseport', 'sticky'];
// A worker that crashes within STABLE_MS of its start counts as a repeated
// crash of its slot; the restart delay doubles from BACKOFF_BASE up to
// BACKOFF_MAX.
const STABLE_MS = 10000;
const BACKOFF_BASE = 200;
const BACKOFF_MAX = 15000;

const HELP = `Usage: native-cluster [options] <app> [options] [-- app args...]
       native-cluster [options] -- <app> [app args...]
       native-cluster status|reload|stop [--name <name>] [--json]
       native-cluster scale <n> [--name <name>]

Runs <app>, an unmodified Node.js server script (CommonJS or ES module), on
N worker processes that share its ports; native-cluster's native primary
distributes the connections. In the app, cluster.isWorker is true, so an app
written for node:cluster runs its worker branch.

Options:
  -i, --instances <N|max>   number of workers (default: max, the
                            available parallelism: ${os.availableParallelism()} here);
                            0 is max too, -N all but N (at least 1)
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
      --unresponsive-timeout <ms>
                            a worker whose event loop is silent this long
                            (it beats every ms/4 from its own loop) gets no
                            new connections, is replaced by a new worker and
                            killed (default 0: no watchdog)
      --max-memory <MB>     a worker whose RSS stays above this (two samples
                            a second apart) is replaced gracefully: the new
                            one first, then the old one drained
      --max-restarts <n>    more than n crash restarts within
                            --restart-window: stop every worker and exit 1
                            with the reason (default: restart for ever)
      --restart-window <ms> the window of --max-restarts (default ${DEFAULT_RESTART_WINDOW})
      --name <name>         open a control socket under this name, for the
                            status, reload, scale and stop commands
      --metrics <[host:]port>
                            serve cluster.metrics() (Prometheus text) at
                            http://host:port/metrics (host 127.0.0.1 unless
                            given); served by the primary's JavaScript
      --pidfile <path>      write the primary's pid there (removed at exit)
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
  SIGHUP           reload without downtime (cluster.reload()): the workers
                   are replaced one at a time, each by a new worker forked
                   first; the old one gets no new connections and is
                   disconnected once the new one is ready (listens on as
                   many servers as the old one did). A new worker that
                   crashes or is not ready within --listen-timeout stops
                   the reload; the remaining old workers keep serving.

Commands (to a cluster started with --name; without --name, the only one
running):
  status [--json]  workers: id, pid, slot, state, uptime, restarts, CPU,
                   memory, connections
  reload           as SIGHUP; returns once done, non-zero if it failed
  scale <n>        run n workers (new ones forked, extra ones drained)
  stop             as SIGTERM
  The control socket is $XDG_RUNTIME_DIR/native-cluster/<name>.sock, or
  ${os.tmpdir()}/native-cluster-<uid>/<name>.sock, mode 0600; only its
  owner may use it.

Every worker gets NODE_APP_INSTANCE, its slot 0..N-1, kept across restarts
and reloads (run one-off jobs where it is 0). When the process that
started native-cluster dies (a SIGTERM to npx, which does not forward it),
native-cluster stops as on SIGTERM.

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
    unresponsiveTimeout: 0,
    maxMemory: 0,
    maxRestarts: undefined,
    restartWindow: DEFAULT_RESTART_WINDOW,
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
    '--unresponsive-timeout': 'unresponsiveTimeout',
    '--max-memory': 'maxMemory',
    '--max-restarts': 'maxRestarts',
    '--restart-window': 'restartWindow',
    '--name': 'name',
    '--metrics': 'metrics',
    '--pidfile': 'pidfile',
  };
  // Our options go before or after the app; the app's own arguments after
  // `--` (or, with `--` before the app, everything after the app).
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      i++;
      if (opts.app === undefined && i < argv.length) opts.app = argv[i++];
      opts.args.push(...argv.slice(i));
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
    if (!arg.startsWith('-') || arg === '-') {
      if (opts.app === undefined) opts.app = arg;
      else opts.args.push(arg);
      continue;
    }
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
    if (key === undefined) {
      throw new UsageError(opts.app === undefined ? `unknown option ${arg}` :
        `unknown option ${arg} (the app's own options go after --)`);
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`option ${name} needs a value`);
      value = argv[++i];
    }
    opts[key] = value;
  }
  if (opts.help || opts.version) return opts;
  if (opts.app === undefined) throw new UsageError('no app given');

  const cpus = os.availableParallelism();
  if (opts.instances === 'max' || opts.instances === '0') {
    opts.instances = cpus;
  } else if (/^[1-9]\d*$/.test(opts.instances)) {
    opts.instances = Number(opts.instances);
  } else if (/^-[1-9]\d*$/.test(opts.instances)) {
    opts.instances = Math.max(1, cpus + Number(opts.instances));
  } else {
    throw new UsageError('-i/--instances takes a positive integer, max or 0 (all CPUs), or -N (all but N), ' +
      `not ${JSON.stringify(opts.instances)}`);
  }
  if (opts.name !== undefined && !/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/.test(opts.name)) {
    throw new UsageError(`--name takes letters, digits, '.', '_' and '-' (64 at most), not ${JSON.stringify(opts.name)}`);
  }
  if (opts.metrics !== undefined) opts.metrics = parseListen(opts.metrics);
  if (opts.policy === undefined) {
    const fromEnv = process.env.NODE_CLUSTER_SCHED_POLICY;
    opts.policy = POLICIES.includes(fromEnv) ? fromEnv : 'rr';
  }
  if (!POLICIES.includes(opts.policy)) {
    throw new UsageError(`--policy takes ${POLICIES.join(', ')}, not ${JSON.stringify(opts.policy)}`);
  }
  for (const [key, flag, what] of [
    ['killTimeout', '--kill-timeout', 'milliseconds'], ['listenTimeout', '--listen-timeout', 'milliseconds'],
    ['listenGrace', '--listen-grace', 'milliseconds'], ['unresponsiveTimeout', '--unresponsive-timeout', 'milliseconds'],
    ['maxMemory', '--max-memory', 'megabytes'], ['maxRestarts', '--max-restarts', 'a count'],
    ['restartWindow', '--restart-window', 'milliseconds']]) {
    if (typeof opts[key] === 'string') {
      if (!/^\d+$/.test(opts[key])) throw new UsageError(`${flag} takes ${what}, not ${JSON.stringify(opts[key])}`);
      opts[key] = Number(opts[key]);
    }
  }
  return opts;
}

// --metrics [host:]port (127.0.0.1 unless a host is given).
function parseListen(value) {
  const m = /^(?:\[?([^\]]*?)\]?:)?(\d{1,5})$/.exec(value);
  if (!m || Number(m[2]) > 65535) throw new UsageError(`--metrics takes [host:]port, not ${JSON.stringify(value)}`);
  return { host: m[1] || '127.0.0.1', port: Number(m[2]) };
}

const SUBCOMMANDS = ['status', 'reload', 'scale', 'stop'];

// `native-cluster status|reload|scale <n>|stop [--name app] [--json]`:
// asks a running cluster over its control socket.
async function subcommand(argv) {
  const [cmd, ...rest] = argv;
  let name;
  let json = false;
  let workers;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (arg === '--json') json = true;
    else if (arg === '--name') name = rest[++i];
    else if (arg.startsWith('--name=')) name = arg.slice(7);
    else if (cmd === 'scale' && workers === undefined && /^\d+$/.test(arg)) workers = Number(arg);
    else throw new UsageError(`${cmd}: unexpected ${JSON.stringify(arg)}`);
  }
  if (cmd === 'scale' && workers === undefined) throw new UsageError('scale needs a number of workers');
  if (name === undefined) {
    const found = control.names();
    if (found.length !== 1) {
      throw new UsageError(found.length === 0 ? `no running cluster found in ${control.directory()} (start one with --name)` :
        `several clusters run (${found.join(', ')}): say which with --name`);
    }
    name = found[0];
  }
  let reply;
  try {
    reply = await control.request(name, cmd === 'scale' ? { cmd, workers } : { cmd });
  } catch (err) {
    process.stderr.write(`native-cluster: cannot reach ${name}: ${err.code || err.message}\n`);
    return 1;
  }
  if (!reply.ok) {
    process.stderr.write(`native-cluster: ${name}: ${reply.error}\n`);
    return 1;
  }
  if (json) process.stdout.write(`${JSON.stringify(reply)}\n`);
  else if (cmd === 'status') process.stdout.write(statusTable(reply));
  else if (cmd === 'reload') process.stdout.write(`${name}: ${reply.replaced.length} workers replaced\n`);
  else if (cmd === 'scale') process.stdout.write(`${name}: scaled to ${reply.workers}\n`);
  else process.stdout.write(`${name}: stopping\n`);
  return 0;
}

function statusTable(s) {
  const mb = (b) => (b == null ? '-' : `${(b / 1048576).toFixed(1)} MB`);
  const up = (ms) => (ms < 60000 ? `${Math.round(ms / 1000)}s` : ms < 3600000 ? `${Math.round(ms / 60000)}m` : `${(ms / 3600000).toFixed(1)}h`);
  const rows = [['id', 'pid', 'slot', 'state', 'uptime', 'restarts', 'cpu', 'memory', 'connections']];
  for (const w of s.workers) {
    rows.push([w.id, w.pid, w.slot ?? '-', w.unresponsive ? 'unresponsive' : w.state, up(w.uptime), w.restarts,
      w.cpuPercent == null ? '-' : `${w.cpuPercent}%`, mb(w.rss), w.connections.accepted].map(String));
  }
  const width = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) => r.map((c, i) => c.padEnd(width[i])).join('  ').trimEnd());
  return `${s.name}: ${s.app}, primary ${s.primary.pid} (policy ${s.primary.policy}), ${s.workers.length} workers\n${lines.join('\n')}\n`;
}

function log(message) {
  process.stderr.write(`[native-cluster] ${message}\n`);
}

function main(argv) {
  if (SUBCOMMANDS.includes(argv[0])) {
    subcommand(argv).then((code) => { process.exitCode = code; }, (err) => {
      if (!(err instanceof UsageError)) throw err;
      process.stderr.write(`native-cluster: ${err.message}\nRun native-cluster --help for usage.\n`);
      process.exitCode = 2;
    });
    return;
  }
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
  cluster.setupPrimary({
    exec: app,
    args: opts.args,
    listenGrace: opts.listenGrace,
    ...(opts.unresponsiveTimeout > 0 ? { heartbeatTimeout: opts.unresponsiveTimeout } : {}),
  });

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
  // Crash restarts within the last --restart-window ms (for --max-restarts).
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
    setInterval(() => {
      for (const [worker, info] of live) {
        if (!info.slot || info.slot.worker !== worker || worker.isDead()) continue;
        const rss = rssMB(worker.process.pid);
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
    const now = Date.now();
    restarts.push(now);
    while (restarts.length > 0 && restarts[0] <= now - opts.restartWindow) restarts.shift();
    if (opts.maxRestarts !== undefined && restarts.length > opts.maxRestarts) {
      log(`${name(worker)} crashed (${describeExit(code, signal)}): ${restarts.length} crashes within ` +
        `${opts.restartWindow} ms, over --max-restarts ${opts.maxRestarts}; stopping`);
      giveUp();
      return;
    }
    slot.crashes = now - info.startedAt < STABLE_MS ? slot.crashes + 1 : 1;
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

  // --max-restarts exceeded: stop everything and exit non-zero.
  function giveUp() {
    stopping = true;
    forced = true;
    for (const slot of slots) clearTimeout(slot.timer);
    for (const worker of live.keys()) {
      if (worker.isConnected()) worker.disconnect();
    }
    killTimer = setTimeout(killAll, opts.killTimeout);
    finishIfDone();
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

  // SIGHUP: the library's reload (one worker at a time, each replacement
  // ready before its predecessor is drained), then the slots follow.
  // Resolves with the outcome of the last reload cycle ({ replaced, error }).
  let reloadDone = null;
  function reload(why) {
    if (stopping) return Promise.resolve({ replaced: [], error: 'stopping' });
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
      if (stopping) break;
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
    if (!Number.isInteger(n) || n < 1 || n > 1024) throw new Error(`scale takes 1 to 1024 workers, not ${n}`);
    if (stopping) throw new Error('stopping');
    while (slots.length < n) {
      const slot = { worker: null, crashes: 0, timer: null, online: true };
      slots.push(slot);
      fork(slot);
    }
    while (slots.length > n) {
      const slot = slots.pop();
      clearTimeout(slot.timer);
      const worker = slot.worker;
      if (worker && !worker.isDead()) {
        live.get(worker).slot = null;
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

  if (opts.name !== undefined) {
    control.serve(opts.name, async (req) => {
      switch (req.cmd) {
        case 'status': return status();
        case 'reload': {
          const outcome = await reload('control: reload');
          if (outcome.error) throw new Error(outcome.error);
          return { replaced: outcome.replaced };
        }
        case 'scale': return scale(req.workers);
        case 'stop': setImmediate(() => stop('control: stop')); return { stopping: true };
        default: throw new Error(`unknown command ${JSON.stringify(req.cmd)}`);
      }
    }).then((c) => log(`control socket ${c.file}`), (err) => {
      log(`cannot open the control socket: ${err.message}`);
      process.exit(1);
    });
  }
  if (opts.pidfile !== undefined) {
    fs.writeFileSync(opts.pidfile, `${process.pid}\n`);
    process.once('exit', () => fs.rmSync(opts.pidfile, { force: true }));
  }
  if (opts.metrics !== undefined) {
    const { host, port } = opts.metrics;
    require('node:http').createServer((req, res) => {
      if (req.method !== 'GET' || req.url.split('?')[0] !== '/metrics') {
        res.writeHead(404).end('not found\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(cluster.metrics());
    }).listen(port, host, () => log(`metrics at http://${host.includes(':') ? `[${host}]` : host}:${port}/metrics`))
      .on('error', (err) => log(`metrics: ${err.message}`))
      .unref();
  }

  // Stop with the process that started us (npx does not forward SIGTERM).
  try {
    const native = require('../lib/native.js');
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

  log(`primary ${process.pid}: starting ${opts.instances} worker${opts.instances === 1 ? '' : 's'} ` +
    `of ${path.relative(process.cwd(), app) || app} (policy ${opts.policy})`);
  for (let i = 0; i < opts.instances; i++) {
    slots.push({ worker: null, crashes: 0, timer: null, online: false });
  }
  for (const slot of slots) fork(slot);
}

// A process's resident set in MB (NaN once it is gone).
function rssMB(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
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
