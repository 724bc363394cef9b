'use strict';
// The CLI's commands to a running cluster (status, reload, scale, stop),
// sent over its control socket.

const control = require('../../lib/control.js');
const { UsageError, help, checkName } = require('./args.js');

const SUBCOMMANDS = ['status', 'reload', 'scale', 'stop'];
// `stop` waits for the primary to exit: its --kill-timeout (the cluster
// says which; this when it does not), after which it kills what is left,
// plus this margin for the kill and the exit themselves.
const DEFAULT_KILL_TIMEOUT = 8000;
const STOP_MARGIN_MS = 5000;

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

// `native-cluster status|reload|scale <n>|stop [--name app] [--json]`:
// asks a running cluster over its control socket.
async function subcommand(argv) {
  const [cmd, ...rest] = argv;
  let name;
  let json = false;
  let workers;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (arg === '-h' || arg === '--help') {
      process.stdout.write(help());
      return 0;
    }
    if (arg === '--json') json = true;
    else if (arg === '--name') {
      if (i + 1 >= rest.length) throw new UsageError('option --name needs a value');
      name = rest[++i];
    } else if (arg.startsWith('--name=')) name = arg.slice(7);
    else if (cmd === 'scale' && workers === undefined && /^\d+$/.test(arg)) workers = Number(arg);
    else throw new UsageError(`${cmd}: unexpected ${JSON.stringify(arg)}`);
  }
  if (cmd === 'scale' && workers === undefined) throw new UsageError('scale needs a number of workers');
  if (name !== undefined) checkName(name);
  if (name === undefined) {
    const found = await control.running();
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
    process.stderr.write(`native-cluster: ${unreachable(name, err)}\n`);
    return 1;
  }
  if (!reply.ok) {
    process.stderr.write(`native-cluster: ${name}: ${reply.error}\n`);
    return 1;
  }
  if (cmd === 'stop') return stopped(name, reply, json);
  if (json) process.stdout.write(`${JSON.stringify(reply)}\n`);
  else if (cmd === 'status') process.stdout.write(statusTable(reply));
  else if (cmd === 'reload') process.stdout.write(`${name}: ${plural(reply.replaced.length, 'worker')} replaced\n`);
  else if (cmd === 'scale') process.stdout.write(`${name}: scaled to ${reply.workers}\n`);
  return 0;
}

function unreachable(name, err) {
  if (err.code === 'ENAMETOOLONG') return err.message;
  if (err.code === 'ENOENT') return `no cluster named ${name} runs`;
  // Its socket file outlived it (a killed primary); request() removed it.
  if (err.code === 'ECONNREFUSED') return `no cluster named ${name} runs (its stale control socket was removed)`;
  return `cannot reach ${name}: ${err.code || err.message}`;
}

// The cluster closes the stop's connection when its primary exits.
async function stopped(name, reply, json) {
  const bound = (reply.killTimeout ?? DEFAULT_KILL_TIMEOUT) + STOP_MARGIN_MS;
  let timer;
  const exited = await Promise.race([
    reply.closed.then(() => true),
    new Promise((resolve) => { timer = setTimeout(resolve, bound, false); }),
  ]);
  clearTimeout(timer);
  if (!exited) {
    reply.hangUp();
    process.stderr.write(`native-cluster: ${name}: primary ${reply.pid} still running ${bound} ms after stop ` +
      `(it should have killed its workers after ${bound - STOP_MARGIN_MS} ms and exited); left as it is\n`);
    return 1;
  }
  if (json) process.stdout.write(`${JSON.stringify({ ok: true, stopped: true, pid: reply.pid })}\n`);
  else process.stdout.write(`${name}: stopped\n`);
  return 0;
}

function statusTable(s) {
  const mb = (b) => (b == null ? '-' : `${(b / 1048576).toFixed(1)} MB`);
  const up = (ms) => (ms < 60000 ? `${Math.round(ms / 1000)}s` : ms < 3600000 ? `${Math.round(ms / 60000)}m` : `${(ms / 3600000).toFixed(1)}h`);
  const rows = [['id', 'pid', 'slot', 'state', 'uptime', 'restarts', 'cpu', 'memory', 'connections']];
  for (const w of s.workers) {
    rows.push([w.id, w.pid, w.slot ?? '-', w.unresponsive ? 'unresponsive' : w.state, up(w.uptime), w.restarts,
      w.cpuPercent == null ? '-' : `${w.cpuPercent}%`, mb(w.rss), w.connections.accepted ?? '-'].map(String));
  }
  const width = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) => r.map((c, i) => c.padEnd(width[i])).join('  ').trimEnd());
  return `${s.name}: ${s.app}, primary ${s.primary.pid} (policy ${s.primary.policy}), ` +
    `${plural(s.workers.length, 'worker')}\n${lines.join('\n')}\n`;
}

module.exports = { SUBCOMMANDS, subcommand };
