'use strict';
// The CLI's arguments: options, their defaults and checks, and the help
// text that documents them.

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
                   servers, finishes the connections in progress and exits;
                   a keep-alive connection's next request is answered with
                   Connection: close, an idle one closes after the server's
                   keepAliveTimeout + 1 s); workers still running after
                   --kill-timeout get SIGKILL.
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

module.exports = {
  parseArgs, HELP, UsageError, STABLE_MS, BACKOFF_BASE, BACKOFF_MAX,
};
