// cluster.watch() and the CLI's --watch, on real processes, real files and
// real HTTP clients on 127.0.0.1: a change under the watched directory
// replaces every worker, changes under .git, node_modules or `ignore` do
// not, quick changes make one reload, and requests keep being answered
// while the CLI reloads. Fixtures: __test__/fixtures/watch/.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { start } from './cli_harness.mjs';
import { fixture } from './helpers.mjs';
import { freePort, request, sleep } from './fixtures/reliability/util.mjs';

const require = createRequire(import.meta.url);

// A directory with an app tree: src/, node_modules/dep/, .git/.
function appDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nc-watch-'));
  for (const sub of ['src/deep', 'node_modules/dep/lib', '.git/objects', 'logs']) {
    fs.mkdirSync(path.join(dir, sub), { recursive: true });
  }
  for (const file of ['src/a.js', 'src/b.js', 'src/deep/c.js', 'node_modules/dep/lib/index.js',
    '.git/HEAD', '.git/objects/x', 'logs/app.log']) {
    fs.writeFileSync(path.join(dir, file), '// v1\n');
  }
  return dir;
}

const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };
const touch = (dir, file, text = `// ${Date.now()} ${Math.random()}\n`) => fs.writeFileSync(path.join(dir, file), text);

// The fixture primary; `next(kind)` resolves with the next event of that kind
// (in order), `all(kind)` lists those seen so far.
function startPrimary(dir, port, debounce, env = {}) {
  const child = spawn(process.execPath, [fixture('watch/primary.mjs')], {
    env: { ...process.env, IMPL: 'native', DIR: dir, PORT: String(port), DEBOUNCE: String(debounce), ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const events = [];
  const taken = new Map();
  const waiters = [];
  let partial = '';
  let stderr = '';
  const check = () => {
    for (const w of [...waiters]) {
      const seen = events.filter((e) => e[0] === w.kind);
      const i = taken.get(w.kind) ?? 0;
      if (seen.length > i) {
        taken.set(w.kind, i + 1);
        waiters.splice(waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(seen[i].slice(1));
      }
    }
  };
  child.stdout.on('data', (d) => {
    partial += d;
    let i;
    while ((i = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, i);
      partial = partial.slice(i + 1);
      if (line.startsWith('@@')) events.push(JSON.parse(line.slice(2)).slice(1));
    }
    check();
  });
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((r) => child.on('close', r));
  return {
    events,
    all: (kind) => events.filter((e) => e[0] === kind).map((e) => e.slice(1)),
    next: (kind, timeout = 20000) => new Promise((resolve, reject) => {
      const w = { kind, resolve };
      w.timer = setTimeout(() => reject(new Error(`no ${kind} event in ${timeout} ms: ${JSON.stringify(events)}\n${stderr}`)), timeout);
      waiters.push(w);
      check();
    }),
    async stop() {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

const servingPids = async (port, n = 20) => {
  const pids = new Set();
  for (let i = 0; i < n; i++) {
    const r = await request(port, { timeout: 5000 });
    assert.equal(r.status, 200, JSON.stringify(r));
    // The fixture primary's workers answer their pid, the CLI's app JSON.
    pids.add(r.body.startsWith('{') ? JSON.parse(r.body).pid : Number(r.body));
  }
  return [...pids].sort();
};

test('watch(dir): a change under it replaces both workers; .git and node_modules are ignored', async () => {
  const dir = appDir();
  const port = await freePort();
  const p = startPrimary(dir, port, 200);
  try {
    const [before] = await p.next('watching');
    assert.equal(before.length, 2);
    // Ignored first: had they been seen, the next reload would list them.
    touch(dir, 'node_modules/dep/lib/index.js');
    touch(dir, '.git/HEAD');
    touch(dir, '.git/objects/x');
    fs.mkdirSync(path.join(dir, 'node_modules/newdep'));
    touch(dir, 'node_modules/newdep/index.js');
    await sleep(600);
    assert.deepEqual(p.all('change'), []);
    touch(dir, 'src/deep/c.js');
    const [files] = await p.next('change');
    assert.deepEqual(files, [path.join(dir, 'src/deep/c.js')]);
    const [result, after] = await p.next('reload');
    assert.deepEqual(result.replaced.map((r) => r.oldPid).sort(), before);
    assert.deepEqual(result.replaced.map((r) => r.newPid).sort(), after);
    for (const pid of after) assert.ok(!before.includes(pid), `${pid} was there before`);
    assert.deepEqual(await servingPids(port), after);

    // A directory made after the watch started is watched too.
    fs.mkdirSync(path.join(dir, 'src/made/later'), { recursive: true });
    const [made] = await p.next('change');
    assert.ok(made.every((f) => f.startsWith(path.join(dir, 'src/made'))), JSON.stringify(made));
    await p.next('reload');
    touch(dir, 'src/made/later/d.js');
    assert.deepEqual((await p.next('change'))[0], [path.join(dir, 'src/made/later/d.js')]);
    await p.next('reload');
  } finally {
    await p.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('watch(dir): quick changes make one reload; changes during a reload make one more after it', async () => {
  const dir = appDir();
  const port = await freePort();
  // Each worker listens 1 s after its start: the reload of two takes 2 s.
  const p = startPrimary(dir, port, 300, { LISTEN_DELAY: '1000' });
  try {
    const [before] = await p.next('watching', 30000);
    // Five changes 50 ms apart, within the 300 ms debounce of each other.
    for (const file of ['src/a.js', 'src/b.js', 'src/a.js', 'src/deep/c.js', 'src/b.js']) {
      touch(dir, file);
      await sleep(50);
    }
    const [files] = await p.next('change');
    assert.deepEqual(files.sort(), ['src/a.js', 'src/b.js', 'src/deep/c.js'].map((f) => path.join(dir, f)));
    // While that reload runs: three changes further apart than the
    // debounce, each of which would reload on its own.
    for (const file of ['src/a.js', 'src/b.js', 'src/a.js']) {
      touch(dir, file);
      await sleep(400);
    }
    const [first, mid] = await p.next('reload');
    assert.equal(first.replaced.length, 2);
    assert.ok(first.ms >= 1500, `the reload took ${first.ms} ms`);
    const [again] = await p.next('change');
    assert.deepEqual(again.sort(), ['src/a.js', 'src/b.js'].map((f) => path.join(dir, f)));
    const kinds = p.events.map((e) => e[0]).filter((k) => k !== 'watching');
    assert.deepEqual(kinds.slice(0, 3), ['change', 'reload', 'change'], 'one more reload, after the first ended');
    const [second, after] = await p.next('reload');
    assert.deepEqual(second.replaced.map((r) => r.oldPid).sort(), mid);
    for (const pid of after) assert.ok(!before.includes(pid) && !mid.includes(pid));
    await sleep(1000);
    assert.equal(p.all('change').length, 2, JSON.stringify(p.all('change')));
    assert.equal(p.all('reload').length, 2);
  } finally {
    await p.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// In this process (no workers): the reload is a stand-in that records what
// it was called with.
function recorder() {
  const calls = [];
  let wake = null;
  const r = {
    calls,
    fail: false,
    reload: async (files) => {
      calls.push(files.map((f) => f.split(path.sep).join('/')));
      if (wake) wake();
      if (r.fail) throw new Error('replacement exited');
      return { replaced: [], ms: 0 };
    },
    next: (timeout = 10000) => new Promise((resolve, reject) => {
      const n = calls.length;
      const timer = setTimeout(() => reject(new Error(`no reload in ${timeout} ms`)), timeout);
      wake = () => {
        if (calls.length > n) {
          clearTimeout(timer);
          wake = null;
          resolve(calls[calls.length - 1]);
        }
      };
    }),
  };
  return r;
}

test('watch(): options.ignore (globs, RegExp, function), a watched file saved by rename, reload errors, close()', async (t) => {
  const cluster = require('../');
  const dir = appDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rel = (f) => path.join(dir, f).split(path.sep).join('/');
  fs.mkdirSync(path.join(dir, 'src/gen'));
  const r = recorder();
  const watcher = cluster.watch(dir, {
    debounce: 100,
    reload: r.reload,
    ignore: ['logs', '*.tmp', 'src/deep/**', /^src\/gen\//, (f) => f.endsWith('.swp')],
  });
  try {
    for (const f of ['logs/app.log', 'src/x.tmp', 'src/deep/c.js', 'src/gen/y.js', 'src/a.js.swp']) touch(dir, f);
    await sleep(300);
    assert.deepEqual(r.calls, []);
    touch(dir, 'src/a.js');
    assert.deepEqual(await r.next(), [rel('src/a.js')]);

    // A failed reload is reported, and the watch goes on.
    const errors = [];
    watcher.on('reloadError', (err) => errors.push(err.message));
    r.fail = true;
    touch(dir, 'src/b.js');
    await r.next();
    await sleep(50);
    assert.deepEqual(errors, ['replacement exited']);
    r.fail = false;
    touch(dir, 'src/b.js');
    assert.deepEqual(await r.next(), [rel('src/b.js')]);
  } finally {
    watcher.close();
  }
  // Closed: nothing more.
  touch(dir, 'src/a.js');
  await sleep(300);
  assert.equal(r.calls.length, 3);

  // One file, saved as editors do: a new file renamed over it.
  const one = recorder();
  const single = cluster.watch(path.join(dir, 'src/a.js'), { debounce: 50, reload: one.reload });
  try {
    touch(dir, 'src/b.js');
    await sleep(200);
    assert.deepEqual(one.calls, []);
    fs.writeFileSync(path.join(dir, 'src/.a.js.new'), '// v2\n');
    fs.renameSync(path.join(dir, 'src/.a.js.new'), path.join(dir, 'src/a.js'));
    assert.deepEqual(await one.next(), [rel('src/a.js')]);
    fs.writeFileSync(path.join(dir, 'src/.a.js.new'), '// v3\n');
    fs.renameSync(path.join(dir, 'src/.a.js.new'), path.join(dir, 'src/a.js'));
    assert.deepEqual(await one.next(), [rel('src/a.js')]);
  } finally {
    single.close();
  }
});

test('watch(): argument checks; a path that does not exist fails as fs.watch does', () => {
  const cluster = require('../');
  const missing = path.join(os.tmpdir(), 'nc-watch-missing', 'src');
  assert.throws(() => cluster.watch(missing), {
    code: 'ENOENT', syscall: 'watch', path: missing,
    message: `ENOENT: no such file or directory, watch '${missing}'`,
  });
  // Nothing is left watching when one of several paths is missing.
  assert.throws(() => cluster.watch([os.tmpdir(), missing]), { code: 'ENOENT' });
  assert.throws(() => cluster.watch(), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => cluster.watch([]), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => cluster.watch(['']), { code: 'ERR_INVALID_ARG_VALUE' });
  assert.throws(() => cluster.watch('.', null), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => cluster.watch('.', { debounce: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => cluster.watch('.', { debounce: '200' }), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => cluster.watch('.', { ignore: [3] }), {
    code: 'ERR_INVALID_ARG_TYPE',
    message: 'The "options.ignore" property must be one of type string or function or an instance of RegExp or Array. Received type number (3)',
  });
  assert.throws(() => cluster.watch('.', { reload: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' });
});

// The CLI, started in `cwd`; `waitFor(re, n)` resolves once its stderr
// matched re n times.
const startCli = (args, cwd, env) => start(args, { cwd, env, timeout: 20000 });

test('CLI -i 2 --watch app.js: two changes, two rolling reloads, every worker replaced, 0 failed requests', async (t) => {
  const dir = appDir();
  fs.copyFileSync(fixture('cli/server.js'), path.join(dir, 'app.js'));
  const port = await freePort();
  // `--watch` right before the app: the app is still the app.
  const r = startCli(['-i', '2', '--watch', 'app.js'], dir, { PORT: String(port) });
  let load;
  try {
    await r.waitFor(/watching \. \(\.git and node_modules ignored\)/);
    await r.waitFor(/listening on/, 2);
    const first = r.pids();
    // Four loops of `Connection: close` requests from another process.
    load = spawn(process.execPath, [fixture('reliability/load.mjs'), String(port), '4'], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    load.stdout.on('data', (d) => { out += d; });
    await sleep(300);
    touch(dir, 'src/a.js');
    await r.waitFor(/src\/a\.js changed: replacing 2 workers one at a time/);
    await r.waitFor(/reload done: 2 workers replaced/);
    touch(dir, 'src/deep/c.js');
    touch(dir, 'node_modules/dep/lib/index.js');
    await r.waitFor(/src\/deep\/c\.js changed: replacing 2 workers one at a time/);
    await r.waitFor(/reload done: 2 workers replaced/, 2);
    await sleep(300);
    load.stdin.end();
    await new Promise((resolve) => load.on('close', resolve));
    const result = JSON.parse(out);
    t.diagnostic(`${result.ok} requests ok during two reloads; slowest ${result.maxMs} ms`);
    assert.deepEqual(result.failed, []);
    assert.ok(result.ok > 50, JSON.stringify(result));
    assert.equal((r.err.match(/changed: replacing/g) || []).length, 2, r.err);
    assert.doesNotMatch(r.err, /node_modules\/dep/);
    // Every worker replaced twice: the first ones are gone, the second
    // reload's serve.
    const replacements = [...r.err.matchAll(/\(pid (\d+)\) replaces worker/g)].map((m) => Number(m[1]));
    assert.equal(replacements.length, 4, r.err);
    const current = replacements.slice(2);
    for (const pid of first) assert.ok(!alive(pid), `${pid} still runs`);
    for (const pid of await servingPids(port)) assert.ok(current.includes(pid), `${pid} serves; not in ${current}`);
    r.child.kill('SIGTERM');
    assert.equal((await r.exit).code, 0, r.err);
  } finally {
    if (load && load.exitCode === null) load.kill('SIGKILL');
    await r.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('CLI --watch=paths: comma-separated, relative to the current directory; a missing one fails before any worker starts', async () => {
  const dir = appDir();
  fs.copyFileSync(fixture('cli/server.js'), path.join(dir, 'app.js'));
  const port = await freePort();
  try {
    const missing = startCli(['-i', '1', '--watch=src,nope', 'app.js'], dir, { PORT: String(port) });
    assert.equal((await missing.exit).code, 1);
    assert.equal(missing.err, '[native-cluster] --watch: cannot watch nope: no such file or directory\n');
    const empty = startCli(['--watch=src,', 'app.js'], dir, { PORT: String(port) });
    assert.equal((await empty.exit).code, 2);
    assert.match(empty.err, /^native-cluster: --watch= takes comma-separated paths, not "src,"\n/);

    // Only src/deep and app.js: a change in src/b.js is not watched.
    const r = startCli(['-i', '1', 'app.js', '--watch=src/deep,app.js'], dir, { PORT: String(port) });
    try {
      await r.waitFor(/watching src\/deep, app\.js/);
      await r.waitFor(/listening on/);
      touch(dir, 'src/b.js');
      await sleep(600);
      touch(dir, 'app.js', fs.readFileSync(path.join(dir, 'app.js'), 'utf8'));
      await r.waitFor(/reload done: 1 worker replaced/);
      assert.match(r.err, /\] app\.js changed: replacing 1 worker one at a time/);
      assert.doesNotMatch(r.err, /b\.js/);
    } finally {
      await r.cleanup();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
