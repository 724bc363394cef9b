'use strict';
// How many workers fit: the CPUs this process may run on (its
// sched_getaffinity mask, as the kernel reports it in /proc/self/status),
// capped by the CPU quota of its cgroup and every ancestor (v2 cpu.max, v1
// cpu.cfs_quota_us / cpu.cfs_period_us; ceil(quota / period), at least 1),
// unless NATIVE_CLUSTER_WORKERS says otherwise. os.availableParallelism()
// is not enough: Node 20 ignores quotas, and from Node 22 libuv reads a v2
// cpu.max only, rounding down, and misses v1 quotas.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path').posix;
const { makeError } = require('./errors.js');

const ENV = 'NATIVE_CLUSTER_WORKERS';
const MAX_WORKERS = 1024;

// `root` is where the filesystem starts ('/' but in tests, which point it
// at a fake tree); `env` is process.env but in tests.
function parallelism({ env = process.env, root = '/' } = {}) {
  const fromEnv = env[ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!/^[1-9]\d*$/.test(fromEnv) || Number(fromEnv) > MAX_WORKERS) {
      throw makeError(RangeError, 'ERR_NATIVE_CLUSTER_WORKERS',
        `${ENV} must be a whole number from 1 to ${MAX_WORKERS}, not ${JSON.stringify(fromEnv)}`);
    }
    return { count: Number(fromEnv), source: `${ENV}=${fromEnv}`, cpus: null, quota: null };
  }
  const read = (file) => {
    try {
      return fs.readFileSync(path.join(root, file), 'latin1');
    } catch {
      return null;
    }
  };
  const { cpus, online } = affinity(read);
  const quota = cgroupQuota(read);
  if (quota !== null && Math.ceil(quota) < cpus) {
    const count = Math.max(1, Math.ceil(quota));
    return { count, source: `cgroup quota of ${plural(round(quota), 'CPU')} on ${cpus}`, cpus, quota };
  }
  const source = online > cpus ? `CPU affinity of ${plural(cpus, 'CPU')} on ${online}` : plural(cpus, 'CPU');
  return { count: cpus, source, cpus, quota };
}

function availableParallelism() {
  return parallelism().count;
}

// The affinity mask counted over the online CPUs, as sched_getaffinity()
// reports it; where /proc is missing (not Linux), Node's answer.
function affinity(read) {
  const status = read('/proc/self/status');
  const allowed = status && /^Cpus_allowed_list:\s*(\S+)/m.exec(status);
  const fallback = os.availableParallelism();
  if (!allowed) return { cpus: fallback, online: fallback };
  let set = cpuList(allowed[1]);
  const onlineText = read('/sys/devices/system/cpu/online');
  const online = onlineText === null ? null : cpuList(onlineText.trim());
  if (online !== null && online.size > 0) set = new Set([...set].filter((cpu) => online.has(cpu)));
  const cpus = Math.max(1, set.size);
  return { cpus, online: online === null || online.size === 0 ? cpus : online.size };
}

// "0-3,8,10-11" as a set of CPU numbers.
function cpuList(text) {
  const set = new Set();
  for (const part of text.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) continue;
    for (let cpu = Number(m[1]); cpu <= Number(m[2] ?? m[1]); cpu++) set.add(cpu);
  }
  return set;
}

// The smallest quota, in CPUs, of this process's cgroup and its ancestors,
// in the v2 hierarchy and the v1 cpu controller's (a host may mount both);
// null when none is set.
function cgroupQuota(read) {
  const membership = read('/proc/self/cgroup');
  const mountinfo = read('/proc/self/mountinfo');
  if (membership === null || mountinfo === null) return null;
  const mounts = parseMountinfo(mountinfo);
  let smallest = null;
  const consider = (quota) => {
    if (quota !== null && (smallest === null || quota < smallest)) smallest = quota;
  };
  for (const line of membership.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '0' && m[2] === '') {
      const mount = pickMount(mounts.filter((x) => x.type === 'cgroup2'), m[3]);
      if (mount) consider(walk(mount, m[3], (dir) => quotaV2(read(path.join(dir, 'cpu.max')))));
    } else if (m[2].split(',').includes('cpu')) {
      const mount = pickMount(mounts.filter((x) => x.type === 'cgroup' && x.options.includes('cpu')), m[3]);
      if (mount) {
        consider(walk(mount, m[3], (dir) => quotaV1(read(path.join(dir, 'cpu.cfs_quota_us')),
          read(path.join(dir, 'cpu.cfs_period_us')))));
      }
    }
  }
  return smallest;
}

function parseMountinfo(text) {
  const mounts = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-', 6);
    if (dash < 0) continue;
    mounts.push({
      root: unescape(fields[3]),
      point: unescape(fields[4]),
      type: fields[dash + 1],
      options: (fields[dash + 3] || '').split(','),
    });
  }
  return mounts;
}

// mountinfo writes space, tab, newline and backslash in paths as \ooo.
function unescape(field) {
  return field.replace(/\\([0-7]{3})/g, (_, octal) => String.fromCharCode(parseInt(octal, 8)));
}

// Of the mounts of one hierarchy, the one whose root holds the cgroup
// (the deepest, when one is bind-mounted in parts); inside a cgroup
// namespace the path is relative to the namespace's root, which is what
// the namespace's own mount shows as '/'.
function pickMount(mounts, cgroup) {
  let best = null;
  for (const mount of mounts) {
    if (!within(cgroup, mount.root)) continue;
    if (best === null || mount.root.length > best.root.length) best = mount;
  }
  return best ?? mounts[0] ?? null;
}

const within = (p, dir) => dir === '/' || p === dir || p.startsWith(`${dir}/`);

// The smallest limit from the cgroup's directory up to the mount point: a
// limit on an ancestor applies to everything below it. A cgroup outside
// the mount's root (a namespace's view) is read at the mount point.
function walk(mount, cgroup, limitOf) {
  let relative = within(cgroup, mount.root) ? cgroup.slice(mount.root === '/' ? 0 : mount.root.length) : '/';
  if (relative.split('/').includes('..')) relative = '/';
  let smallest = null;
  const parts = relative.split('/').filter((part) => part !== '' && part !== '.');
  for (let depth = parts.length; depth >= 0; depth--) {
    const limit = limitOf(path.join(mount.point, ...parts.slice(0, depth)));
    if (limit !== null && (smallest === null || limit < smallest)) smallest = limit;
  }
  return smallest;
}

// cpu.max: "max 100000" (no limit) or "200000 100000".
function quotaV2(text) {
  const m = text && /^(\d+)\s+(\d+)\s*$/.exec(text);
  return m && Number(m[2]) > 0 ? Number(m[1]) / Number(m[2]) : null;
}

// cpu.cfs_quota_us is -1 when there is no limit.
function quotaV1(quotaText, periodText) {
  const quota = quotaText && /^\s*(-?\d+)\s*$/.exec(quotaText);
  const period = periodText && /^\s*(\d+)\s*$/.exec(periodText);
  if (!quota || !period || Number(quota[1]) <= 0 || Number(period[1]) <= 0) return null;
  return Number(quota[1]) / Number(period[1]);
}

const round = (n) => Math.round(n * 100) / 100;
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

module.exports = { parallelism, availableParallelism, ENV, MAX_WORKERS };
