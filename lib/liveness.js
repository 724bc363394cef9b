'use strict';
// Keeps the primary's event loop alive exactly while some worker process is
// alive (and not unref'd), like Node's own ChildProcess handles do.

const native = require('./native.js');

let count = 0;

module.exports = {
  hold() {
    if (count++ === 0) native.setRef(true);
  },
  release() {
    if (--count === 0) native.setRef(false);
  },
};
