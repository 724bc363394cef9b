#!/usr/bin/env node
'use strict';
// The published package.json carries no `prepare` script. In a clone,
// `prepare` builds the addon on `npm install`; in a consumer's install the
// addon comes prebuilt (in the tarball or a platform package), and npm 11
// warns about every lifecycle script it finds there. Nor the devDependency
// on itself (`file:.`): in a clone it puts the package in its own
// node_modules, so the tests, examples and benchmarks load it by name as an
// installed app does; published, it would point nowhere. `npm pack`/`publish`
// run `prepack` (strip) and `postpack` (restore) around making the tarball.

const fs = require('node:fs');
const path = require('node:path');

const manifest = path.join(__dirname, '..', 'package.json');
const saved = path.join(__dirname, '..', '.package.json.prepack');

const mode = process.argv[2];
if (mode === 'strip') {
  const text = fs.readFileSync(manifest, 'utf8');
  const pkg = JSON.parse(text);
  fs.writeFileSync(saved, text);
  delete pkg.scripts.prepare;
  delete pkg.devDependencies[pkg.name];
  fs.writeFileSync(manifest, `${JSON.stringify(pkg, null, 2)}\n`);
} else if (mode === 'restore') {
  if (fs.existsSync(saved)) fs.renameSync(saved, manifest);
} else {
  process.stderr.write('usage: pack_manifest.js strip|restore\n');
  process.exit(2);
}
