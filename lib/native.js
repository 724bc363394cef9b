'use strict';
// Loads the compiled addon built by `npm install` (napi build --platform).

const path = require('node:path');

const root = path.join(__dirname, '..');
const arch = { x64: 'x64', arm64: 'arm64' }[process.arch] || process.arch;
const file = path.join(root, `native-cluster.${process.platform}-${arch}-gnu.node`);

module.exports = require(file);
