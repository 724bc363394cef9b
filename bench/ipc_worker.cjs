'use strict';
// IPC bench worker: echoes pings, counts and acknowledges primary->worker
// data in batches, and pumps worker->primary data with a bounded window.

const { performance } = require('node:perf_hooks');

let batch = 1;
let got = 0;
let pump = null;

process.on('message', (m) => {
  switch (m.c) {
    case 'ping':
      process.send({ c: 'pong', i: m.i });
      break;
    case 'p2w':
      batch = m.batch;
      got = 0;
      process.send({ c: 'p2w-ready' });
      break;
    case 'd':
      if (++got % batch === 0) process.send({ c: 'ack' });
      break;
    case 'w2p':
      pump = startPump(m);
      break;
    case 'ack':
      if (pump) pump.onAck();
      break;
    default:
      break;
  }
});

// Sends `batch`-message bursts, at most `window` unacknowledged, for
// `durationMs`; reports messages per second once the last burst is acked.
function startPump({ batch, window, durationMs, size }) {
  const msg = size > 0 ? { c: 'd', d: 'x'.repeat(size) } : { c: 'd', i: 12345, s: 'hello' };
  let inflight = 0;
  let acked = 0;
  const start = performance.now();
  const deadline = start + durationMs;
  const fill = () => {
    while (inflight < window) {
      for (let i = 0; i < batch; i++) process.send(msg);
      inflight++;
    }
  };
  const p = {
    onAck() {
      inflight--;
      acked += batch;
      const now = performance.now();
      if (now < deadline) fill();
      else if (inflight === 0) {
        pump = null;
        process.send({ c: 'w2p-done', rate: acked / ((now - start) / 1000), msgs: acked });
      }
    },
  };
  fill();
  return p;
}
