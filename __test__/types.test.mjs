// index.d.ts types native-cluster as @types/node types node:cluster (and a
// little more), and register.d.ts types `native-cluster/register`. Checked
// as a user gets them: the package is packed and installed into a new
// project, and the typed examples in __test__/types/ must pass
// `tsc --noEmit` there with TypeScript 5.9 and 7 under nodenext and node16
// (ESM, CommonJS and checkJs), `module: commonjs` with each compiler's
// default resolution (node10 on 5.9, bundler on 7, which removed node10) and
// bundler resolution, all with noUncheckedSideEffectImports so an
// unresolvable `import 'native-cluster/register'` fails. Each example holds
// @ts-expect-error lines, so a d.ts that degraded to `any` fails too.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const require = createRequire(import.meta.url);

// devDependencies: `typescript` (5.9) and `typescript7` (npm:typescript@7),
// run by path (both would own node_modules/.bin/tsc; TypeScript 7's
// `exports` hides bin/ from require.resolve).
const compilers = ['typescript', 'typescript7'].map((name) => {
  const dir = path.join(root, 'node_modules', name);
  try {
    const { version } = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    return { name, tsc: path.join(dir, 'bin', 'tsc'), version };
  } catch {
    return { name, tsc: undefined, version: undefined };
  }
});
let hasTypesNode = true;
try {
  require.resolve('@types/node/package.json');
} catch {
  hasTypesNode = false;
}

const configs = ['tsconfig.json', 'tsconfig.node16.json', 'tsconfig.commonjs.json', 'tsconfig.bundler.json'];

const run = (cmd, args, opts) => new Promise((resolve) => {
  execFile(cmd, args, { timeout: 120000, ...opts }, (err, stdout, stderr) =>
    resolve({ code: err ? err.code : 0, stdout, stderr }));
});

let tmp;
let project;
let setupError;

before(async () => {
  if (!hasTypesNode || compilers.every((c) => !c.tsc)) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nc-types-'));
  project = path.join(tmp, 'app');
  fs.mkdirSync(project);
  const packed = await run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: root });
  if (packed.code !== 0) {
    setupError = `npm pack failed: ${packed.stderr}`;
    return;
  }
  const [info] = JSON.parse(packed.stdout);
  // No "type": a .ts file is CommonJS here, as in most projects.
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  const installed = await run('npm', ['install', '--no-audit', '--no-fund', path.join(tmp, info.filename)], { cwd: project });
  if (installed.code !== 0) {
    setupError = `npm install <tarball> failed: ${installed.stderr}`;
    return;
  }
  // @types/node from this clone (after the install, which would prune it).
  fs.symlinkSync(path.join(root, 'node_modules', '@types'), path.join(project, 'node_modules', '@types'));
  for (const f of fs.readdirSync(path.join(here, 'types'))) {
    fs.copyFileSync(path.join(here, 'types', f), path.join(project, f));
  }
});

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

for (const compiler of compilers) {
  const skip = !hasTypesNode ? '@types/node is not installed (npm install): type tests skipped' :
    !compiler.tsc ? `${compiler.name} is not installed (npm install): skipped` : false;
  for (const config of configs) {
    test(`TypeScript ${compiler.version ?? compiler.name}: tsc --noEmit -p ${config}, against the installed tarball`, { skip, timeout: 120000 }, async () => {
      assert.equal(setupError, undefined, setupError);
      const result = await run(process.execPath, [compiler.tsc, '--noEmit', '-p', path.join(project, config)], { cwd: project });
      assert.equal(result.code, 0, result.stdout + result.stderr);
    });
  }
}

test('the devDependencies are TypeScript 5.9 and 7', { skip: compilers.some((c) => !c.tsc) && 'a compiler is not installed' }, () => {
  assert.match(compilers[0].version, /^5\.9\./);
  assert.match(compilers[1].version, /^7\./);
});
