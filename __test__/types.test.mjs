// index.d.ts types native-cluster as @types/node types node:cluster (and a
// little more): typed usage examples in __test__/types/ must pass
// `tsc --noEmit` under nodenext (ESM, CommonJS and checkJs), classic
// CommonJS with esModuleInterop, and bundler resolution. Each example holds
// @ts-expect-error lines, so a d.ts that degraded to `any` fails too.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc');
  require.resolve('@types/node/package.json');
} catch {
  tsc = undefined;
}
const skip = tsc ? false : 'typescript and @types/node are not installed (npm install): type tests skipped';

for (const config of ['tsconfig.json', 'tsconfig.commonjs.json', 'tsconfig.bundler.json']) {
  test(`tsc --noEmit -p __test__/types/${config}`, { skip, timeout: 60000 }, async () => {
    const result = await new Promise((resolve) => {
      execFile(process.execPath, [tsc, '--noEmit', '-p', path.join(here, 'types', config)],
        { cwd: path.join(here, '..') },
        (error, stdout, stderr) => resolve({ code: error ? error.code : 0, out: stdout + stderr }));
    });
    assert.equal(result.code, 0, result.out);
  });
}
