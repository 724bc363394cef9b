'use strict';
// The compiled addon built by `npm install` (napi build --platform), loaded
// on first use: requiring the package costs no dlopen until a primary
// forks. Each stub replaces itself (and all others) with the addon's
// functions, so later calls go straight to native code.

const path = require('node:path');

const root = path.join(__dirname, '..');
const arch = { x64: 'x64', arm64: 'arm64' }[process.arch] || process.arch;
const file = path.join(root, `native-cluster.${process.platform}-${arch}-gnu.node`);

const FUNCTIONS = ['start', 'setRef', 'configure', 'spawn', 'pid', 'send', 'sendText',
  'disconnect', 'closeChannel', 'kill', 'flush', 'listened', 'closeFd', 'gate', 'parentDeathSignal', 'activate', 'stats', 'peerUid'];

for (const name of FUNCTIONS) {
  module.exports[name] = function loadThenCall(...args) {
    Object.assign(module.exports, require(file));
    return module.exports[name](...args);
  };
}
