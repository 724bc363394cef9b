'use strict';
// Entry: in the primary, the native cluster; in a worker, Node's own worker
// view (the worker half of the protocol is Node's runtime, by design).

const nodeCluster = require('node:cluster');

module.exports = nodeCluster.isWorker ? nodeCluster : require('./primary.js');
