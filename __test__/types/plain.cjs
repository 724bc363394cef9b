// JavaScript (checkJs): const cluster = require('native-cluster').
'use strict';
const cluster = require('native-cluster');
const { fork } = require('native-cluster');

if (cluster.isPrimary) {
  /** @type {import('native-cluster').Worker} */
  const worker = fork();
  worker.on('exit', (code, signal) => console.log(code.toFixed(0), signal.toUpperCase()));
  // @ts-expect-error workers is a dictionary, not a function
  cluster.workers();
}
