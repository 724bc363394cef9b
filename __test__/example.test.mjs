// The documented examples, run as a user would: examples/seed.mjs (every
// worker starts, every worker prints the primary's greeting, all of them
// serve port 8000) and the README's first example, examples/hello.mjs
// (every worker answers on port 8000).
import test from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { untilRefusalsEnd } from './helpers.mjs';
import { get, runSeedExample } from './seed_example.mjs';

const example = (name) => fileURLToPath(new URL(`../examples/${name}`, import.meta.url));

test('examples/seed.mjs: N workers start, each receives the greeting, all serve hello world', async () => {
  await runSeedExample(example('seed.mjs'));
});

test('examples/hello.mjs: every worker answers on port 8000', async () => {
  const n = os.availableParallelism();
  const child = spawn(process.execPath, [example('hello.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const ids = new Set();
    const deadline = Date.now() + 10000;
    while (ids.size < n && Date.now() < deadline) {
      const body = await untilRefusalsEnd(get, 10000);
      assert.match(body, /^hello from worker \d+\n$/);
      ids.add(body);
    }
    assert.equal(ids.size, n);
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.on('exit', resolve));
  }
});
