'use strict';
// The HTTP "hello world" server of the bench. Run by cluster workers
// (`node http_worker.cjs <port>`), or required by a single-process primary.
// Workers answer {bench:'stats'} with their request count, CPU and RSS.

const http = require('node:http');

let count = 0;

function createServer() {
  return http.createServer((req, res) => {
    count++;
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('hello world\n');
  });
}

function stats() {
  return { count, cpu: process.cpuUsage(), rss: process.memoryUsage().rss };
}

module.exports = { createServer, stats };

if (require.main === module) {
  const port = Number(process.argv[2]);
  createServer().listen(port, '127.0.0.1');
  process.on('message', (m) => {
    if (m && m.bench === 'stats') process.send({ bench: 'stats', ...stats() });
  });
}
