'use strict';
// The CLI's arguments: options, their defaults and checks, and the help
// text that documents them.

const net = require('node:net');
const os = require('node:os');
const { parallelism } = require('../../lib/parallelism.js');

// Above Node's default keepAliveTimeout (5 s) plus the 1 s it adds: a
// disconnected worker whose clients hold idle keep-alive connections leaves
// by itself once the server's keep-alive timer has closed them.
const DEFAULT_KILL_TIMEOUT = 8000;
const DEFAULT_LISTEN_TIMEOUT = 30000;
const DEFAULT_LISTEN_GRACE = 5000;
const DEFAULT_RESTART_WINDOW = 60000;
const POLICIES = ['rr', 'none', 'reuseport', 'sticky'];
// -i and `scale`: more would stall the machine with forks.
const MAX_WORKERS = 1024;
// A worker that crashes within STABLE_MS of its start counts as a repeated
// crash of its slot; the restart delay doubles from BACKOFF_BASE up to
// BACKOFF_MAX.
const STABLE_MS = 10000;
const BACKOFF_BASE = 200;
const BACKOFF_MAX = 15000;

// Built when asked for: it reads this machine's CPU count and quota.
function help() {
  return `Usage: native-cluster [options] <app> [options] [-- app args...]
       native-cluster [options] -- <app> [app args...]
       native-cluster status|reload|stop [--name <name>] [--json]
       native-cluster scale <n> [--name <name>]

Runs <app>, an unmodified Node.js server script (CommonJS or ES module), on
N worker processes that share its ports; native-cluster's native primary
distributes the connections. In the app, cluster.isWorker is true, so an app
written for node:cluster runs its worker branch.

Options:
  -i, --instances <N|max>   number of workers, 1 to ${MAX_WORKERS} (default: max:
                            the CPUs this process may run on, within its
                            cgroup's CPU quota, or NATIVE_CLUSTER_WORKERS when
                            set; ${countHere()} here); 0 is max too, -N all
                            but N (at least 1)
      --policy <rr|none|reuseport|sticky>
                            rr: the primary accepts connections and hands them
                            to the workers in turn (default); none: the workers
                            accept from a shared socket themselves; reuseport:
                            each worker accepts from its own SO_REUSEPORT
                            socket; sticky: like rr, but one client address
                            always reaches the same worker. Default from
                            NODE_CLUSTER_SCHED_POLICY when set.
      --kill-timeout <ms>   time a disconnected worker gets to exit before
                            SIGKILL (default ${DEFAULT_KILL_TIMEOUT}: longer than an
                            idle keep-alive connection lives with Node's
                            default keepAliveTimeout)
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
      --max-restarts <n>    more than n restarts (crashes and --max-memory
                            replacements) within --restart-window: stop
                            every worker and exit 1 with the reason
                            (default: restart for ever)
      --restart-window <ms> the window of --max-restarts, 1 or more
                            (default ${DEFAULT_RESTART_WINDOW})
      --name <name>         open a control socket under this name, for the
                            status, reload, scale and stop commands; refused
                            while a cluster of that name runs
      --metrics <[host:]port>
                            serve cluster.metrics() (Prometheus text) at
                            http://host:port/metrics (host 127.0.0.1 unless
                            given, an IPv6 one in brackets); served by the
                            primary's JavaScript
      --pidfile <path>      write the primary's pid there (removed at exit)
      --watch[=<paths>]     for development: reload (as SIGHUP) when a file
                            under the app's directory, or under the
                            comma-separated paths, changes (once none has
                            for 200 ms); .git and node_modules are ignored.
                            Paths only after '=': \`--watch app.js\` runs app.js
  -h, --help                show this help
  -v, --version             print the version

Crashes:
  A worker that exits with a non-zero code or by a signal, without having
  been asked to, is restarted at once. When the same worker keeps crashing
  (each time within ${STABLE_MS / 1000} s of its start) the restarts back off:
  ${BACKOFF_BASE} ms, ${BACKOFF_BASE * 2} ms, ${BACKOFF_BASE * 4} ms, ... up to ${BACKOFF_MAX / 1000} s.
  A worker that exits with code 0 on its own, or disconnects itself, is not
  restarted; when no worker is left, native-cluster exits with code 0.

Start-up:
  Before the first worker is forked, the --name, the --pidfile and the
  --metrics port are claimed; when one cannot be (a cluster of that name
  runs, the file cannot be written, the port is taken), native-cluster says
  so in one line and exits 1, having started nothing and touched nothing
  of another instance's. The workers are forked one per turn of the event
  loop: a signal during a long start-up stops it.

Signals (to the native-cluster process):
  SIGINT, SIGTERM  graceful stop: each worker is disconnected (it closes its
                   servers, finishes the connections in progress and exits;
                   a keep-alive connection's next request is answered with
                   Connection: close, an idle one closes after the server's
                   keepAliveTimeout + 1 s); workers still running after
                   --kill-timeout get SIGKILL.
                   The workers run in a session of their own, so Ctrl-C in
                   a terminal (SIGINT to the foreground process group)
                   reaches native-cluster only, and drains them too.
                   A second signal kills the workers at once.
  SIGHUP           reload without downtime (cluster.reload()): the workers
                   are replaced one at a time, each by a new worker forked
                   first; the old one gets no new connections and is
                   disconnected once the new one is ready (listens on as
                   many servers as the old one did). A new worker that
                   crashes or is not ready within --listen-timeout stops
                   the reload; the remaining old workers keep serving.

Exit status:
  0  every worker stopped gracefully (or, with none asked to stop, exited
     with code 0 on its own)
  1  a stop had to kill workers (requests in progress, if any, were cut), a
     worker exited abnormally during the stop, --max-restarts gave up, or
     the start failed; the last status line says which
  2  a usage error (an unknown option, a bad value, no app)

Commands (to a cluster started with --name; without --name, the only one
running):
  status [--json]  workers: id, pid, slot, state, uptime, restarts, CPU,
                   memory, connections. restarts: how many times the
                   slot got a new worker (crash restarts, reloads, the
                   --unresponsive-timeout and --max-memory replacements;
                   not a reload's new worker that failed). connections:
                   accepted by the worker (with --policy none or
                   reuseport, as the worker last reported, <= 200 ms ago)
  reload           as SIGHUP; returns once done, non-zero if it failed
                   or a stop cut it short
  scale <n>        run n workers (new ones forked, extra ones drained)
  stop             as SIGTERM; returns once the cluster has exited, or
                   exits 1 if it still runs --kill-timeout + 5 s later
  The control socket is $XDG_RUNTIME_DIR/native-cluster/<name>.sock, or
  ${os.tmpdir()}/native-cluster-<uid>/<name>.sock, mode 0600; only its
  owner may use it; its path must fit in 107 bytes. One left by a killed
  cluster (nobody answers on it) is removed.

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
}

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
  // The last option whose value was the next argument.
  let lastSeparate = null;
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
    // --watch: paths only after '=', so that `--watch app.js` runs app.js.
    if (arg === '--watch' || arg.startsWith('--watch=')) {
      const paths = arg === '--watch' ? [] : arg.slice('--watch='.length).split(',');
      if (paths.includes('')) throw new UsageError(`--watch= takes comma-separated paths, not ${JSON.stringify(arg.slice(8))}`);
      opts.watch = [...(opts.watch || []), ...paths];
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
      lastSeparate = { name, value };
    }
    opts[key] = value;
  }
  if (opts.help || opts.version) return opts;
  // `--pidfile app.js` with no app after it: the option took the app.
  if (opts.app === undefined && lastSeparate) {
    throw new UsageError(`option ${lastSeparate.name} needs a value (${JSON.stringify(lastSeparate.value)} is taken as its value, and no app is left)`);
  }
  if (opts.app === undefined) throw new UsageError('no app given');

  if (opts.instances === 'max' || opts.instances === '0') {
    opts.instances = sized(opts, 0);
  } else if (/^[1-9]\d*$/.test(opts.instances)) {
    if (Number(opts.instances) > MAX_WORKERS) {
      throw new UsageError(`-i/--instances takes 1 to ${MAX_WORKERS} workers, not ${JSON.stringify(opts.instances)}`);
    }
    opts.instances = Number(opts.instances);
  } else if (/^-[1-9]\d*$/.test(opts.instances)) {
    opts.instances = sized(opts, -Number(opts.instances));
  } else {
    throw new UsageError('-i/--instances takes a positive integer, max or 0 (all CPUs), or -N (all but N), ' +
      `not ${JSON.stringify(opts.instances)}`);
  }
  if (opts.name !== undefined) checkName(opts.name);
  if (opts.pidfile !== undefined && /\.(?:[cm]?[jt]s|json)$/.test(opts.pidfile)) {
    throw new UsageError(`--pidfile takes the pidfile's path, not ${JSON.stringify(opts.pidfile)} (a script: it would be overwritten)`);
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
  // A window of 0 would forget every restart at once: no limit at all.
  if (opts.restartWindow === 0) throw new UsageError('--restart-window takes 1 ms or more, not "0"');
  return opts;
}

// --name, here and in the commands: a control socket's file name.
function checkName(name) {
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw new UsageError(`--name takes letters, digits, '.', '_' and '-' (64 at most), not ${JSON.stringify(name)}`);
  }
}

// -i max, 0 and -N: the available parallelism less `less`, and for the log,
// where that number came from.
function sized(opts, less) {
  let found;
  try {
    found = parallelism();
  } catch (err) {
    throw new UsageError(err.message);
  }
  const count = Math.min(MAX_WORKERS, Math.max(1, found.count - less));
  opts.sizing = `${count} worker${count === 1 ? '' : 's'}: ${found.source}${less ? `, less ${less}` : ''}`;
  return count;
}

function countHere() {
  try {
    return parallelism().count;
  } catch {
    return '?';
  }
}

// --metrics [host:]port: host a name, an IPv4 address or a bracketed IPv6
// one (127.0.0.1 unless given); port 1 to 65535.
function parseListen(value) {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]:|([A-Za-z0-9.-]+):)?(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535 || (m[1] !== undefined && !net.isIPv6(m[1]))) {
    throw new UsageError(`--metrics takes [host:]port (an IPv6 host in brackets), not ${JSON.stringify(value)}`);
  }
  return { host: m[1] ?? m[2] ?? '127.0.0.1', port };
}

module.exports = {
  parseArgs, checkName, help, UsageError, STABLE_MS, BACKOFF_BASE, BACKOFF_MAX, MAX_WORKERS,
};
