// Types of native-cluster: the `cluster` module of @types/node (same names,
// same signatures), for a package whose CommonJS entry is
// `module.exports = cluster` and whose ES module entry has the same object as
// its default export plus one named export per property.
//
//   import cluster from 'native-cluster';          // ES module (or esModuleInterop)
//   import { fork, isPrimary } from 'native-cluster';
//   import cluster = require('native-cluster');    // TypeScript CommonJS
//   const cluster = require('native-cluster');     // JavaScript
//
// `cluster.Cluster`, `cluster.Worker`, `cluster.ClusterSettings` and
// `cluster.Address` are also exported as types.

/// <reference types="node" />

import * as child from 'node:child_process';
import EventEmitter = require('node:events');
import * as net from 'node:net';

// The Worker interface lives outside the namespace (`export =` exports only
// `cluster`) and enters it as a type alias: a named import `Worker` then
// means both this type and the `cluster.Worker` constructor, one identity.
/**
 * A `Worker` object: in the primary, one per worker (from `cluster.fork()`,
 * `cluster.workers`); in a worker, `cluster.worker`.
 */
interface Worker extends EventEmitter {
  /** The worker's unique id, the key of `cluster.workers`. */
  id: number;
  /** The worker's process (a ChildProcess in the primary, `process` in a worker). */
  process: child.ChildProcess;
  /** Sends a message to the worker (primary) or to the primary (worker). */
  send(message: child.Serializable, callback?: (error: Error | null) => void): boolean;
  send(message: child.Serializable, sendHandle: child.SendHandle, callback?: (error: Error | null) => void): boolean;
  send(
    message: child.Serializable,
    sendHandle: child.SendHandle,
    options?: child.MessageOptions,
    callback?: (error: Error | null) => void,
  ): boolean;
  /** Kills the worker process (SIGTERM unless a signal is given). */
  kill(signal?: string): void;
  /** Alias of `kill()`. */
  destroy(signal?: string): void;
  /** Closes the worker's servers, then its IPC channel; the worker exits once idle. */
  disconnect(): this;
  isConnected(): boolean;
  isDead(): boolean;
  /** True when the worker exited because of `.disconnect()` or `.kill()`. */
  exitedAfterDisconnect: boolean;

  addListener(event: string, listener: (...args: any[]) => void): this;
  addListener(event: 'disconnect', listener: () => void): this;
  addListener(event: 'error', listener: (error: Error) => void): this;
  addListener(event: 'exit', listener: (code: number, signal: string) => void): this;
  addListener(event: 'listening', listener: (address: cluster.Address) => void): this;
  addListener(event: 'message', listener: (message: any, handle: net.Socket | net.Server) => void): this;
  addListener(event: 'online', listener: () => void): this;
  addListener(event: 'ready', listener: () => void): this;
  addListener(event: 'unresponsive', listener: (silentMs: number) => void): this;
  addListener(event: 'responsive', listener: () => void): this;
  emit(event: string | symbol, ...args: any[]): boolean;
  emit(event: 'disconnect'): boolean;
  emit(event: 'error', error: Error): boolean;
  emit(event: 'exit', code: number, signal: string): boolean;
  emit(event: 'listening', address: cluster.Address): boolean;
  emit(event: 'message', message: any, handle: net.Socket | net.Server): boolean;
  emit(event: 'online'): boolean;
  emit(event: 'ready'): boolean;
  emit(event: 'unresponsive', silentMs: number): boolean;
  emit(event: 'responsive'): boolean;
  on(event: string, listener: (...args: any[]) => void): this;
  on(event: 'disconnect', listener: () => void): this;
  on(event: 'error', listener: (error: Error) => void): this;
  on(event: 'exit', listener: (code: number, signal: string) => void): this;
  on(event: 'listening', listener: (address: cluster.Address) => void): this;
  on(event: 'message', listener: (message: any, handle: net.Socket | net.Server) => void): this;
  on(event: 'online', listener: () => void): this;
  on(event: 'ready', listener: () => void): this;
  on(event: 'unresponsive', listener: (silentMs: number) => void): this;
  on(event: 'responsive', listener: () => void): this;
  once(event: string, listener: (...args: any[]) => void): this;
  once(event: 'disconnect', listener: () => void): this;
  once(event: 'error', listener: (error: Error) => void): this;
  once(event: 'exit', listener: (code: number, signal: string) => void): this;
  once(event: 'listening', listener: (address: cluster.Address) => void): this;
  once(event: 'message', listener: (message: any, handle: net.Socket | net.Server) => void): this;
  once(event: 'online', listener: () => void): this;
  once(event: 'ready', listener: () => void): this;
  once(event: 'unresponsive', listener: (silentMs: number) => void): this;
  once(event: 'responsive', listener: () => void): this;
  prependListener(event: string, listener: (...args: any[]) => void): this;
  prependListener(event: 'disconnect', listener: () => void): this;
  prependListener(event: 'error', listener: (error: Error) => void): this;
  prependListener(event: 'exit', listener: (code: number, signal: string) => void): this;
  prependListener(event: 'listening', listener: (address: cluster.Address) => void): this;
  prependListener(event: 'message', listener: (message: any, handle: net.Socket | net.Server) => void): this;
  prependListener(event: 'online', listener: () => void): this;
  prependListener(event: 'ready', listener: () => void): this;
  prependListener(event: 'unresponsive', listener: (silentMs: number) => void): this;
  prependListener(event: 'responsive', listener: () => void): this;
  prependOnceListener(event: string, listener: (...args: any[]) => void): this;
  prependOnceListener(event: 'disconnect', listener: () => void): this;
  prependOnceListener(event: 'error', listener: (error: Error) => void): this;
  prependOnceListener(event: 'exit', listener: (code: number, signal: string) => void): this;
  prependOnceListener(event: 'listening', listener: (address: cluster.Address) => void): this;
  prependOnceListener(event: 'message', listener: (message: any, handle: net.Socket | net.Server) => void): this;
  prependOnceListener(event: 'online', listener: () => void): this;
  prependOnceListener(event: 'ready', listener: () => void): this;
  prependOnceListener(event: 'unresponsive', listener: (silentMs: number) => void): this;
  prependOnceListener(event: 'responsive', listener: () => void): this;
}

type WorkerInstance = Worker;

declare namespace cluster {
  type SerializationType = 'json' | 'advanced';

  interface ClusterSettings {
    /** List of string arguments passed to the Node.js executable. @default process.execArgv */
    execArgv?: string[] | undefined;
    /** File path to worker file. @default process.argv[1] */
    exec?: string | undefined;
    /** String arguments passed to worker. @default process.argv.slice(2) */
    args?: readonly string[] | undefined;
    /** Whether or not to send output to parent's stdio. @default false */
    silent?: boolean | undefined;
    /** Configures the stdio of forked processes; must contain an 'ipc' entry. */
    stdio?: any[] | undefined;
    /** Sets the user identity of the process. */
    uid?: number | undefined;
    /** Sets the group identity of the process. */
    gid?: number | undefined;
    /** Sets the inspector port of the worker: a number, or a function returning one. */
    inspectPort?: number | (() => number) | undefined;
    /** Serialization of messages between processes. @default 'json' */
    serialization?: SerializationType | undefined;
    /** Current working directory of the worker process. @default undefined (inherits from parent) */
    cwd?: string | undefined;
    /** Hide the forked processes console window (Windows only). @default false */
    windowsHide?: boolean | undefined;
    /**
     * native-cluster: milliseconds a round-robin or sticky server keeps its
     * listening socket after its last worker died, so that connections wait
     * in the backlog for a replacement instead of being refused. 0 closes it
     * at once, as node:cluster does. @default 0
     */
    listenGrace?: number | undefined;
    /**
     * native-cluster: a worker is ready (`'ready'`) when it calls
     * `process.send('ready')`, and until then gets no connections where the
     * primary accepts them (PM2's `wait_ready`). Without it, a worker is
     * ready once it listens (a reload's replacement: on as many servers as
     * its predecessor). @default false
     */
    waitReady?: boolean | undefined;
    /**
     * native-cluster: the watchdog. Each worker beats from its own event loop
     * every `heartbeatTimeout / 4` ms; one silent for longer is
     * `'unresponsive'` and gets no new connections until it beats again
     * (`'responsive'`). @default undefined (no watchdog)
     */
    heartbeatTimeout?: number | undefined;
    /**
     * native-cluster: each worker starts in a session and process group of
     * its own (`setsid`, as `child_process`'s `detached`), so the SIGINT a
     * terminal's Ctrl-C sends to its foreground process group reaches the
     * primary only, which can then stop the workers gracefully. A worker
     * still exits when the primary dies (its IPC channel closes).
     * @default false
     */
    detached?: boolean | undefined;
  }

  /** native-cluster: options of `cluster.reload()`. */
  interface ReloadOptions {
    /** Workers replaced at the same time. @default 1 */
    concurrency?: number | undefined;
    /** Milliseconds a replacement gets to be ready before the reload fails. @default 30000 */
    readyTimeout?: number | undefined;
    /** Milliseconds a drained old worker gets to exit before SIGKILL. @default 5000 */
    killTimeout?: number | undefined;
    /** Only these workers. @default every connected worker */
    workers?: Worker[] | undefined;
  }

  /** native-cluster: what `cluster.reload()` replaced. */
  interface ReloadResult {
    replaced: Array<{ old: number; new: number; oldPid: number; newPid: number }>;
    /** How long the reload took. */
    ms: number;
  }

  /** native-cluster: one live worker in `cluster.stats()`. Times in ms, memory in bytes. */
  interface WorkerStats {
    id: number;
    pid: number | undefined;
    state: string;
    /** NODE_APP_INSTANCE. */
    slot: number | null;
    uptime: number;
    /** Times its slot got a new worker after its first: crash restarts and replacements (reload, watchdog); a reload's new worker that failed does not count. */
    restarts: number;
    ready: boolean;
    unresponsive: boolean;
    /**
     * Connections it accepted (handed to it by the primary, or, under
     * SCHED_NONE and SCHED_REUSEPORT, from its own listening socket, as it
     * last reported), and those the primary handed to it not yet answered
     * (null under SCHED_NONE and SCHED_REUSEPORT: not known).
     */
    connections: { accepted: number; inFlight: number | null };
    /** Messages from it (`received`) and to it (`sent`). */
    messages: { received: number; sent: number };
    /** CPU time from /proc; null once it is gone. */
    cpu: { user: number; system: number } | null;
    rss: number | null;
    /** With `heartbeatTimeout`: its last beat (event-loop delay since the beat before). */
    heartbeat: {
      sinceLastBeat: number;
      eventLoopDelay: { p50: number; p99: number; max: number };
      heapUsed: number;
      heapTotal: number;
    } | null;
  }

  /** native-cluster: what `cluster.stats()` returns. */
  interface ClusterStats {
    primary: {
      pid: number;
      uptime: number;
      rss: number;
      cpu: { user: number; system: number };
      /** 'rr', 'none', 'reuseport' or 'sticky'. */
      policy: string;
      /**
       * Connections handed to a worker that died (or whose channel closed)
       * before it acknowledged them, which the primary then handed to
       * another worker instead of closing them.
       */
      connections: { rerouted: number };
    };
    workers: WorkerStats[];
  }

  /**
   * native-cluster: how `cluster.reload()` rejects: `ERR_CLUSTER_WORKER_EXITED`
   * (a replacement exited before it was ready) or `ERR_CLUSTER_READY_TIMEOUT`,
   * with what was replaced before.
   */
  interface ReloadError extends Error {
    code: string;
    replaced: ReloadResult['replaced'];
    ms: number;
  }

  /**
   * native-cluster: what `options.ignore` of `cluster.watch()` takes: a glob
   * (`*`, `?`, `**`; without a `/` it matches a name at any depth), a RegExp
   * tested against the path relative to the watched directory
   * (`/`-separated), or a function of that path returning true to ignore it.
   */
  type WatchIgnore = string | RegExp | ((path: string) => boolean);

  /** native-cluster: options of `cluster.watch()`. */
  interface WatchOptions {
    /** Milliseconds without a change before the reload starts. @default 200 */
    debounce?: number | undefined;
    /** Ignored besides `.git` and `node_modules` (always ignored). */
    ignore?: WatchIgnore | readonly WatchIgnore[] | undefined;
    /** Called instead of `cluster.reload()`, with the changed files. @default () => cluster.reload() */
    reload?: ((files: string[]) => unknown) | undefined;
  }

  /**
   * native-cluster: what `cluster.watch()` returns. It keeps the process
   * alive until `close()`.
   */
  interface Watcher extends EventEmitter {
    /** Stops watching; a reload under way finishes. */
    close(): void;
    addListener(event: string, listener: (...args: any[]) => void): this;
    addListener(event: 'change', listener: (files: string[]) => void): this;
    addListener(event: 'reload', listener: (result: ReloadResult) => void): this;
    addListener(event: 'reloadError', listener: (err: ReloadError) => void): this;
    addListener(event: 'error', listener: (err: Error) => void): this;
    addListener(event: 'close', listener: () => void): this;
    on(event: string, listener: (...args: any[]) => void): this;
    /** A reload starts: the files (absolute paths) changed since the last one. */
    on(event: 'change', listener: (files: string[]) => void): this;
    /** The reload ended: its result (or what `options.reload` resolved with). */
    on(event: 'reload', listener: (result: ReloadResult) => void): this;
    /** The reload failed; the workers not replaced keep serving. */
    on(event: 'reloadError', listener: (err: ReloadError) => void): this;
    /** A watched path can no longer be watched. */
    on(event: 'error', listener: (err: Error) => void): this;
    on(event: 'close', listener: () => void): this;
    once(event: string, listener: (...args: any[]) => void): this;
    once(event: 'change', listener: (files: string[]) => void): this;
    once(event: 'reload', listener: (result: ReloadResult) => void): this;
    once(event: 'reloadError', listener: (err: ReloadError) => void): this;
    once(event: 'error', listener: (err: Error) => void): this;
    once(event: 'close', listener: () => void): this;
  }

  interface Address {
    address: string;
    port: number;
    /** 4, 6, -1 (Unix domain socket), 'udp4' or 'udp6'. */
    addressType: 4 | 6 | -1 | 'udp4' | 'udp6';
  }

  /** A worker (see the module-level `Worker` interface). */
  type Worker = WorkerInstance;

  /** `cluster.Worker`: the constructor of Worker objects. */
  interface WorkerConstructor {
    new (options?: { id?: number; process?: child.ChildProcess; state?: string }): Worker;
    readonly prototype: Worker;
  }

  interface Cluster extends EventEmitter {
    /** Disconnects every worker; the callback runs once all have disconnected. */
    disconnect(callback?: () => void): void;
    /** Spawns a new worker process (primary only). */
    fork(env?: any): Worker;
    /** @deprecated Since v16.0.0 - use `isPrimary`. */
    readonly isMaster: boolean;
    readonly isPrimary: boolean;
    readonly isWorker: boolean;
    /**
     * `SCHED_RR` (round-robin, the default), `SCHED_NONE`, or ours:
     * `SCHED_REUSEPORT`, `SCHED_STICKY`; frozen once the first worker is
     * spawned or `setupPrimary()` is called. Also set by
     * `NODE_CLUSTER_SCHED_POLICY=rr|none|reuseport|sticky`.
     */
    schedulingPolicy: number;
    /** The settings of the last `setupPrimary()` (or the defaults). */
    readonly settings: ClusterSettings;
    /** @deprecated Since v16.0.0 - use `setupPrimary()`. */
    setupMaster(settings?: ClusterSettings): void;
    /** Changes the default `fork` behaviour; applies to workers forked afterwards. */
    setupPrimary(settings?: ClusterSettings): void;
    /**
     * native-cluster: replaces the workers without downtime, one at a time
     * (`concurrency`): each replacement is forked first (same fork env and
     * NODE_APP_INSTANCE), and once it is ready the old worker gets no new
     * connections, is disconnected, and killed after `killTimeout`. Rejects
     * with a {@link ReloadError} when a replacement exits or is not ready in
     * time; the workers not yet replaced keep serving.
     */
    reload(options?: ReloadOptions): Promise<ReloadResult>;
    /**
     * native-cluster, for development: `reload()` once no file under `paths`
     * (files or directories) has changed for `debounce` ms; changes during a
     * reload make one more after it. `.git` and `node_modules` are ignored.
     * Throws as `fs.watch()` does for a path that does not exist.
     */
    watch(paths: string | readonly string[], options?: WatchOptions): Watcher;
    /**
     * native-cluster: the primary and every live worker — connections and
     * messages counted by the core, CPU and memory from /proc, heartbeat
     * figures. About 0.2 ms a call.
     */
    stats(): ClusterStats;
    /** native-cluster: `stats()` in Prometheus text format (names under `native_cluster_`). */
    metrics(): string;
    /**
     * native-cluster: how many workers fit here: the CPUs this process may
     * run on (its affinity), capped by its cgroup's CPU quota (v2 `cpu.max`
     * or v1 `cpu.cfs_quota_us`, on the cgroup and its ancestors, rounded up,
     * at least 1), or `NATIVE_CLUSTER_WORKERS` when set. Unlike
     * `os.availableParallelism()`, which ignores most quotas. Throws
     * `ERR_NATIVE_CLUSTER_WORKERS` when that variable is not 1..1024.
     */
    availableParallelism(): number;
    /** The current worker object (in a worker). */
    readonly worker?: Worker;
    /** The active workers by id (in the primary). */
    readonly workers?: NodeJS.Dict<Worker>;
    readonly SCHED_NONE: number;
    readonly SCHED_RR: number;
    /**
     * native-cluster: every worker listens on its own `SO_REUSEPORT` socket
     * bound to the same port, and the kernel spreads connections over them
     * (TCP servers on a port; Unix sockets and fds stay round-robin).
     */
    readonly SCHED_REUSEPORT: number;
    /**
     * native-cluster: the primary accepts, and all connections from one
     * client IP address go to the same live worker (session protocols such
     * as socket.io's long-polling).
     */
    readonly SCHED_STICKY: number;
    /** The Worker constructor (as on Node's cluster object). */
    readonly Worker: WorkerConstructor;

    addListener(event: string, listener: (...args: any[]) => void): this;
    addListener(event: 'disconnect', listener: (worker: Worker) => void): this;
    addListener(event: 'exit', listener: (worker: Worker, code: number, signal: string) => void): this;
    addListener(event: 'fork', listener: (worker: Worker) => void): this;
    addListener(event: 'listening', listener: (worker: Worker, address: Address) => void): this;
    addListener(event: 'message', listener: (worker: Worker, message: any, handle: net.Socket | net.Server) => void): this;
    addListener(event: 'online', listener: (worker: Worker) => void): this;
    addListener(event: 'ready', listener: (worker: Worker) => void): this;
    addListener(event: 'unresponsive', listener: (worker: Worker, silentMs: number) => void): this;
    addListener(event: 'responsive', listener: (worker: Worker) => void): this;
    addListener(event: 'setup', listener: (settings: ClusterSettings) => void): this;
    emit(event: string | symbol, ...args: any[]): boolean;
    emit(event: 'disconnect', worker: Worker): boolean;
    emit(event: 'exit', worker: Worker, code: number, signal: string): boolean;
    emit(event: 'fork', worker: Worker): boolean;
    emit(event: 'listening', worker: Worker, address: Address): boolean;
    emit(event: 'message', worker: Worker, message: any, handle: net.Socket | net.Server): boolean;
    emit(event: 'online', worker: Worker): boolean;
    emit(event: 'ready', worker: Worker): boolean;
    emit(event: 'unresponsive', worker: Worker, silentMs: number): boolean;
    emit(event: 'responsive', worker: Worker): boolean;
    emit(event: 'setup', settings: ClusterSettings): boolean;
    on(event: string, listener: (...args: any[]) => void): this;
    on(event: 'disconnect', listener: (worker: Worker) => void): this;
    on(event: 'exit', listener: (worker: Worker, code: number, signal: string) => void): this;
    on(event: 'fork', listener: (worker: Worker) => void): this;
    on(event: 'listening', listener: (worker: Worker, address: Address) => void): this;
    on(event: 'message', listener: (worker: Worker, message: any, handle: net.Socket | net.Server) => void): this;
    on(event: 'online', listener: (worker: Worker) => void): this;
    on(event: 'ready', listener: (worker: Worker) => void): this;
    on(event: 'unresponsive', listener: (worker: Worker, silentMs: number) => void): this;
    on(event: 'responsive', listener: (worker: Worker) => void): this;
    on(event: 'setup', listener: (settings: ClusterSettings) => void): this;
    once(event: string, listener: (...args: any[]) => void): this;
    once(event: 'disconnect', listener: (worker: Worker) => void): this;
    once(event: 'exit', listener: (worker: Worker, code: number, signal: string) => void): this;
    once(event: 'fork', listener: (worker: Worker) => void): this;
    once(event: 'listening', listener: (worker: Worker, address: Address) => void): this;
    once(event: 'message', listener: (worker: Worker, message: any, handle: net.Socket | net.Server) => void): this;
    once(event: 'online', listener: (worker: Worker) => void): this;
    once(event: 'ready', listener: (worker: Worker) => void): this;
    once(event: 'unresponsive', listener: (worker: Worker, silentMs: number) => void): this;
    once(event: 'responsive', listener: (worker: Worker) => void): this;
    once(event: 'setup', listener: (settings: ClusterSettings) => void): this;
    prependListener(event: string, listener: (...args: any[]) => void): this;
    prependListener(event: 'disconnect', listener: (worker: Worker) => void): this;
    prependListener(event: 'exit', listener: (worker: Worker, code: number, signal: string) => void): this;
    prependListener(event: 'fork', listener: (worker: Worker) => void): this;
    prependListener(event: 'listening', listener: (worker: Worker, address: Address) => void): this;
    prependListener(event: 'message', listener: (worker: Worker, message: any, handle: net.Socket | net.Server) => void): this;
    prependListener(event: 'online', listener: (worker: Worker) => void): this;
    prependListener(event: 'ready', listener: (worker: Worker) => void): this;
    prependListener(event: 'unresponsive', listener: (worker: Worker, silentMs: number) => void): this;
    prependListener(event: 'responsive', listener: (worker: Worker) => void): this;
    prependListener(event: 'setup', listener: (settings: ClusterSettings) => void): this;
    prependOnceListener(event: string, listener: (...args: any[]) => void): this;
    prependOnceListener(event: 'disconnect', listener: (worker: Worker) => void): this;
    prependOnceListener(event: 'exit', listener: (worker: Worker, code: number, signal: string) => void): this;
    prependOnceListener(event: 'fork', listener: (worker: Worker) => void): this;
    prependOnceListener(event: 'listening', listener: (worker: Worker, address: Address) => void): this;
    prependOnceListener(event: 'message', listener: (worker: Worker, message: any, handle: net.Socket | net.Server) => void): this;
    prependOnceListener(event: 'online', listener: (worker: Worker) => void): this;
    prependOnceListener(event: 'ready', listener: (worker: Worker) => void): this;
    prependOnceListener(event: 'unresponsive', listener: (worker: Worker, silentMs: number) => void): this;
    prependOnceListener(event: 'responsive', listener: (worker: Worker) => void): this;
    prependOnceListener(event: 'setup', listener: (settings: ClusterSettings) => void): this;
  }
}

declare const cluster: cluster.Cluster;

export = cluster;
