'use strict';
// native-cluster/register: makes every request for the `cluster` builtin
// return native-cluster, in the process that loads it and in every worker.
//
//   node --import native-cluster/register app.mjs
//   node --require native-cluster/register app.js
//
// Covered: require('cluster' | 'node:cluster'), static and dynamic import of
// either (default, namespace and named imports), process.getBuiltinModule().
// Node's own internals (net, dgram, the worker bootstrap) load builtins
// through their internal loader and keep the real module, as they must; so do
// native-cluster's own files, which build on node:cluster.
//
// Workers inherit this hook: they are started with the primary's execArgv
// (and environment, for NODE_OPTIONS), like node:cluster's.
//
// How, by Node version:
//   module.registerHooks (Node >= 22.15): one synchronous resolve hook, in
//     this thread, for import and require alike.
//   otherwise (Node 20, 22.0-22.14): Module._load for require, and
//     module.register (an asynchronous resolve hook on the loader thread,
//     passed as a data: URL) for import.
//   process.getBuiltinModule (Node >= 20.16) bypasses every loader hook: it
//     is wrapped.
//
// NATIVE_CLUSTER_REGISTER_DEBUG=1 logs each redirected request to stderr.

function install() {
  const Module = require('node:module');
  const path = require('node:path');
  const { pathToFileURL, fileURLToPath } = require('node:url');

  const debug = process.env.NATIVE_CLUSTER_REGISTER_DEBUG === '1' ?
    (msg) => process._rawDebug(`[native-cluster/register ${process.pid}] ${msg}`) :
    () => {};

  const root = __dirname;
  const cjsEntry = path.join(root, 'index.js');
  const esmEntry = path.join(root, 'index.mjs');
  const cjsURL = pathToFileURL(cjsEntry).href;
  const esmURL = pathToFileURL(esmEntry).href;

  // The package's own runtime files, which must see the real builtin. Not
  // the whole package directory: a checkout also holds tests and examples,
  // which are user code.
  const ownDirs = ['lib', 'bin'].map((d) => path.join(root, d) + path.sep);
  const ownFiles = new Set([cjsEntry, esmEntry, __filename]);
  const isOwnFile = (file) =>
    typeof file === 'string' && (ownFiles.has(file) || ownDirs.some((d) => file.startsWith(d)));
  const ownURLs = {
    dirs: ownDirs.map((d) => pathToFileURL(d).href),
    files: [...ownFiles].map((f) => pathToFileURL(f).href),
  };
  const isOwnURL = (url) => {
    if (typeof url !== 'string' || !url.startsWith('file:')) return false;
    try {
      return isOwnFile(fileURLToPath(url));
    } catch {
      return false;
    }
  };

  const isCluster = (id) => id === 'cluster' || id === 'node:cluster';
  const impl = () => require(cjsEntry);

  if (typeof Module.registerHooks === 'function') {
    Module.registerHooks({
      resolve(specifier, context, nextResolve) {
        if (isCluster(specifier) && !isOwnURL(context.parentURL)) {
          const required = Array.isArray(context.conditions) && context.conditions.includes('require');
          debug(`${required ? 'require' : 'import'}(${JSON.stringify(specifier)}) from ${context.parentURL}`);
          return required ?
            { url: cjsURL, format: 'commonjs', shortCircuit: true } :
            { url: esmURL, format: 'module', shortCircuit: true };
        }
        return nextResolve(specifier, context);
      },
    });
  } else {
    const load = Module._load;
    Module._load = function _load(request, parent, isMain) {
      if (isCluster(request) && !(parent && isOwnFile(parent.filename))) {
        debug(`require(${JSON.stringify(request)}) from ${parent && parent.filename}`);
        return impl();
      }
      return Reflect.apply(load, this, arguments);
    };
    if (typeof Module.register === 'function') {
      Module.register(`data:text/javascript,${encodeURIComponent(esmHooks)}`, {
        data: { esmURL, own: ownURLs, debug: process.env.NATIVE_CLUSTER_REGISTER_DEBUG === '1' },
      });
    }
  }

  if (typeof process.getBuiltinModule === 'function') {
    const real = process.getBuiltinModule;
    const descriptor = Object.getOwnPropertyDescriptor(process, 'getBuiltinModule');
    const wrapped = {
      getBuiltinModule(id) {
        if (isCluster(id) && !isOwnFile(callerFile())) {
          debug(`getBuiltinModule(${JSON.stringify(id)})`);
          return impl();
        }
        return Reflect.apply(real, this, arguments);
      },
    }.getBuiltinModule;
    Object.defineProperty(process, 'getBuiltinModule', { ...descriptor, value: wrapped });
  }

  // The file of the first JavaScript frame outside this one.
  function callerFile() {
    const { prepareStackTrace, stackTraceLimit } = Error;
    try {
      Error.stackTraceLimit = 10;
      Error.prepareStackTrace = (_, frames) => frames;
      const holder = {};
      Error.captureStackTrace(holder, callerFile);
      for (const frame of holder.stack) {
        const file = frame.getFileName();
        if (!file || file === __filename || file.startsWith('node:')) continue;
        if (!file.startsWith('file:')) return file;
        try {
          return fileURLToPath(file);
        } catch {
          return undefined;
        }
      }
      return undefined;
    } finally {
      Error.prepareStackTrace = prepareStackTrace;
      Error.stackTraceLimit = stackTraceLimit;
    }
  }
}

// The asynchronous hooks module (module.register). It runs on the loader
// thread and knows only what `initialize` is given.
const esmHooks = `
let esmURL;
let own;
let debug;
export function initialize(data) {
  esmURL = data.esmURL;
  own = data.own;
  debug = data.debug;
}
function isOwnURL(url) {
  return typeof url === 'string' &&
    (own.files.includes(url) || own.dirs.some((d) => url.startsWith(d)));
}
export async function resolve(specifier, context, nextResolve) {
  if ((specifier === 'cluster' || specifier === 'node:cluster') && !isOwnURL(context.parentURL)) {
    if (debug) process._rawDebug('[native-cluster/register loader] import(' + JSON.stringify(specifier) + ') from ' + context.parentURL);
    return { url: esmURL, format: 'module', shortCircuit: true };
  }
  return nextResolve(specifier, context);
}
`;

const INSTALLED = Symbol.for('native-cluster.register');

if (process[INSTALLED] === undefined) {
  Object.defineProperty(process, INSTALLED, { value: true });
  install();
}
