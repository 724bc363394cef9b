'use strict';
module.exports = require('./lib/cluster.js');
