// ES module usage (module: nodenext): default, named and namespace imports.
import cluster from 'native-cluster';
import { fork, isPrimary, isWorker, setupPrimary, workers, worker, SCHED_RR, SCHED_NONE, SCHED_REUSEPORT, SCHED_STICKY, Worker } from 'native-cluster';
import type { Address, Cluster, ClusterSettings, ClusterStats, ReloadError, ReloadResult, Watcher, WorkerStats } from 'native-cluster';
import { reload, watch } from 'native-cluster';
import * as ns from 'native-cluster';
import 'native-cluster/register';
import http from 'node:http';

const settings: ClusterSettings = { exec: 'worker.js', args: ['--x'], serialization: 'advanced', silent: false };
setupPrimary(settings);
cluster.setupPrimary({ execArgv: ['--enable-source-maps'], inspectPort: () => 9230, cwd: '/tmp' });
cluster.schedulingPolicy = SCHED_RR;
const policies: number[] = [SCHED_RR, SCHED_NONE, SCHED_REUSEPORT, SCHED_STICKY, cluster.SCHED_STICKY, ns.SCHED_REUSEPORT, ns.default.SCHED_NONE];

if (isPrimary && cluster.isPrimary && !isWorker) {
  const w: Worker = fork({ FOO: 'bar' });
  const id: number = w.id;
  const pid: number | undefined = w.process.pid;
  w.send({ hello: 'worker' }, (err) => { if (err) throw err; });
  w.send('text', undefined, { keepOpen: false });
  w.on('message', (message: unknown) => void message);
  w.on('exit', (code: number, signal: string) => void [code, signal]);
  w.once('listening', (address: Address) => void address.port);
  cluster.on('exit', (dead: Worker, code: number, signal: string) => {
    if (!dead.exitedAfterDisconnect) cluster.fork();
    void [code, signal];
  });
  cluster.on('listening', (lw, address) => {
    const kind: 4 | 6 | -1 | 'udp4' | 'udp6' = address.addressType;
    void [lw.id, kind];
  });
  cluster.on('setup', (s: ClusterSettings) => void s.exec);
  for (const [key, each] of Object.entries(workers ?? {})) {
    each?.disconnect().kill('SIGTERM');
    void key;
  }
  cluster.disconnect(() => {});
  // The supervisor: readiness, watchdog, reload.
  cluster.setupPrimary({ waitReady: true, heartbeatTimeout: 2000, listenGrace: 3000 });
  w.on('ready', () => {});
  w.on('unresponsive', (silentMs: number) => void silentMs);
  cluster.on('ready', (rw: Worker) => void rw.id);
  cluster.on('unresponsive', (uw: Worker, silentMs: number) => void [uw.id, silentMs]);
  cluster.on('responsive', (rw) => void rw.id);
  cluster.reload({ concurrency: 2, readyTimeout: 10000, killTimeout: 5000, workers: [w] })
    .then((r: ReloadResult) => r.replaced.map((x) => [x.old, x.new, x.oldPid, x.newPid, r.ms]))
    .catch((err: ReloadError) => void [err.code, err.replaced.length]);
  void reload();
  const watcher: Watcher = cluster.watch(['src', 'app.js'], { debounce: 100, ignore: ['*.log', /^tmp\//, (p) => p.endsWith('~')] });
  watcher.on('change', (files: string[]) => void files.length).on('reloadError', (err: ReloadError) => void err.code);
  watch('.', { reload: async (files) => files.length }).close();
  const st: ClusterStats = cluster.stats();
  const perWorker: number[] = st.workers.map((ws: WorkerStats) => ws.connections.accepted + (ws.heartbeat?.eventLoopDelay.p99 ?? 0));
  const text: string = cluster.metrics();
  const fits: number = cluster.availableParallelism();
  void [perWorker, text, st.primary.policy, fits];
  const isWorkerInstance: boolean = w instanceof cluster.Worker && w instanceof Worker;
  const sameCluster: Cluster = ns.default;
  void [id, pid, isWorkerInstance, sameCluster, policies];
} else {
  const self: Worker | undefined = worker ?? cluster.worker;
  http.createServer((req, res) => res.end(`${self?.id}`)).listen(8000);
}

// The types are checked, not `any`.
// @ts-expect-error isPrimary is readonly
cluster.isPrimary = false;
// @ts-expect-error fork returns a Worker
const notAString: string = cluster.fork();
// @ts-expect-error no such setting
cluster.setupPrimary({ execPath: '/bin/node' });
// @ts-expect-error waitReady is a boolean
cluster.setupPrimary({ waitReady: 'yes' });
// @ts-expect-error no such reload option
void cluster.reload({ parallel: 2 });
// @ts-expect-error no such watch option
void cluster.watch('src', { recursive: true });
// @ts-expect-error no such export
import { spawn } from 'native-cluster';
void [notAString, spawn];
