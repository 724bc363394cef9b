'use strict';
// What the CLI claims before it forks a worker: its --name (the control
// socket), its --pidfile and its --metrics port. The first that fails stops
// the start with one line: nothing is forked, and nothing that belongs to
// another instance (a running cluster's socket or pidfile) is touched.

const fs = require('node:fs');
const http = require('node:http');
const control = require('../../lib/control.js');

const REASONS = {
  EADDRINUSE: 'address in use',
  EACCES: 'permission denied',
  EADDRNOTAVAIL: 'not an address of this machine',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host not found',
};

// Resolves once every claim holds; rejects with a one-line Error.
async function claim(opts, { handle, metrics, log }) {
  if (opts.name !== undefined) {
    let socket;
    try {
      socket = await control.serve(opts.name, handle);
    } catch (err) {
      throw new Error(err.code === 'EADDRINUSE' ? err.message : `cannot open the control socket: ${err.message}`);
    }
    log(`control socket ${socket.file}`);
  }
  if (opts.pidfile !== undefined) writePidfile(opts.pidfile);
  if (opts.metrics !== undefined) await serveMetrics(opts.metrics, metrics, log);
}

function writePidfile(file) {
  const content = `${process.pid}\n`;
  try {
    fs.writeFileSync(file, content);
  } catch (err) {
    // "ENOENT: no such file or directory, open '...'": the middle part.
    const why = /^[A-Z]+: ([^,]+),/.exec(err.message)?.[1] ?? err.message;
    throw new Error(`cannot write --pidfile ${file}: ${why}${err.code ? ` (${err.code})` : ''}`);
  }
  // Removed at exit unless another process has written it since.
  process.once('exit', () => {
    try {
      if (fs.readFileSync(file, 'utf8') === content) fs.rmSync(file, { force: true });
    } catch {
      // Already gone.
    }
  });
}

function serveMetrics({ host, port }, text, log) {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || req.url.split('?')[0] !== '/metrics') {
      res.writeHead(404).end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text());
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err) => {
      reject(new Error(`cannot serve --metrics on ${where}: ${REASONS[err.code] ? `${REASONS[err.code]} (${err.code})` : err.message}`));
    });
    server.listen(port, host, () => {
      server.removeAllListeners('error');
      server.on('error', (err) => log(`metrics: ${err.message}`));
      server.unref();
      log(`metrics at http://${where}/metrics`);
      resolve();
    });
  });
}

module.exports = { claim };
