'use strict';
// cluster.watch(paths[, options]): for development, a rolling
// cluster.reload() when a file under `paths` changes. Changes are debounced;
// changes during a reload lead to one more reload once it ends, however
// many there were.
//
// One fs.watch per directory, found by walking the tree here rather than
// with `{ recursive: true }`: ignored directories (.git, node_modules,
// options.ignore) get no inotify watch at all, where a recursive watch takes
// one for each of node_modules' thousands of directories and cannot skip
// them; and Node 20 to 26 report different events for a recursive watch on
// Linux (22 reports no new directory). Symbolic links are not followed.

const EventEmitter = require('node:events');
const fs = require('node:fs');
const path = require('node:path');
const errors = require('./errors.js');

const ALWAYS_IGNORED = ['.git', 'node_modules'];
const DEFAULT_DEBOUNCE = 200;

// A glob as a RegExp: `*` and `?` within one path segment, `**` across.
function globToRegExp(glob) {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*' && glob[i + 1] === '*') {
      i++;
      if (glob[i + 1] === '/') {
        i++;
        source += '(?:.*/)?';
      } else {
        source += '.*';
      }
    } else if (c === '*') {
      source += '[^/]*';
    } else if (c === '?') {
      source += '[^/]';
    } else {
      source += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${source}$`);
}

// `ignore` as one predicate of (path relative to the watched directory,
// with '/' separators; the entry's name). A glob with no '/' matches a
// name at any depth, as in .gitignore; one with '/' the relative path.
function ignoreMatcher(ignore) {
  const list = [...ALWAYS_IGNORED, ...(ignore === undefined ? [] : [].concat(ignore))];
  const tests = list.map((entry) => {
    if (typeof entry === 'function') return (rel) => entry(rel) === true;
    if (entry instanceof RegExp) return (rel) => { entry.lastIndex = 0; return entry.test(rel); };
    if (typeof entry === 'string' && entry !== '') {
      const glob = entry.replace(/^\.\//, '').replace(/\/+$/, '');
      const re = globToRegExp(glob.replace(/^\//, ''));
      return glob.includes('/') ? (rel) => re.test(rel) : (rel, name) => re.test(name);
    }
    throw errors.ERR_INVALID_ARG_TYPE('options.ignore', ['string', 'RegExp', 'Function', 'Array'], entry);
  });
  return (rel, name) => tests.some((t) => t(rel, name));
}

function validate(paths, options) {
  const list = typeof paths === 'string' ? [paths] : paths;
  if (!Array.isArray(list) || list.length === 0 || !list.every((p) => typeof p === 'string')) {
    throw errors.ERR_INVALID_ARG_TYPE('paths', ['string', 'string[]'], paths);
  }
  if (list.includes('')) throw errors.ERR_INVALID_ARG_VALUE('paths', paths, 'must not contain an empty path');
  if (options === undefined) options = {};
  if (options === null || typeof options !== 'object') {
    throw errors.ERR_INVALID_ARG_TYPE('options', 'Object', options);
  }
  errors.validateInteger(options.debounce, 'options.debounce', 0);
  if (options.reload !== undefined && typeof options.reload !== 'function') {
    throw errors.ERR_INVALID_ARG_TYPE('options.reload', 'Function', options.reload);
  }
  return {
    paths: list.map((p) => path.resolve(p)),
    debounce: options.debounce ?? DEFAULT_DEBOUNCE,
    ignored: ignoreMatcher(options.ignore),
    reload: options.reload,
  };
}

// fs.watch's own error for a path that cannot be watched, whichever call
// found it.
function cannotWatch(err, file) {
  if (err.code === undefined) return err;
  const out = new Error(`${err.code}: ${err.message.split(', ')[0].replace(/^\w+: /, '')}, watch '${file}'`);
  Object.assign(out, { errno: err.errno, code: err.code, syscall: 'watch', path: file });
  return out;
}

class Watcher extends EventEmitter {
  constructor(cluster, opts) {
    super();
    this._opts = opts;
    this._reload = opts.reload || (() => cluster.reload());
    // Directory -> its fs.FSWatcher.
    this._watchers = new Map();
    this._changed = new Set();
    this._timer = null;
    this._reloading = false;
    this._closed = false;
    try {
      for (const file of opts.paths) this._watchRoot(file);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  _watchRoot(file) {
    let stat;
    try {
      stat = fs.statSync(file);
    } catch (err) {
      throw cannotWatch(err, file);
    }
    if (stat.isDirectory()) {
      this._watchDir({ dir: file, file: null }, file, '');
    } else {
      // A file: its directory, so that an editor's save by rename (a new
      // inode) is seen too.
      this._watchDir({ dir: path.dirname(file), file }, path.dirname(file), '', false);
    }
  }

  // Watches `dir` (`rel` from its root) and, with `deep`, the directories
  // under it that are not ignored.
  _watchDir(root, dir, rel, deep = true) {
    if (this._closed || this._watchers.has(dir)) return;
    let watcher;
    try {
      watcher = fs.watch(dir, (event, name) => this._onEvent(root, dir, rel, event, name, deep));
    } catch (err) {
      // A directory under the root may be gone by now.
      if (dir === root.dir) throw cannotWatch(err, dir);
      return;
    }
    watcher.on('error', (err) => {
      this._unwatch(dir);
      if (dir === root.dir && !this._closed) this.emit('error', err);
    });
    this._watchers.set(dir, watcher);
    if (!deep) return;
    let entries = [];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      // Gone meanwhile, or unreadable: its own watch reports what it can.
    }
    for (const entry of entries) {
      if (!entry.isDirectory()) continue;
      const sub = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (!this._opts.ignored(sub, entry.name)) this._watchDir(root, path.join(dir, entry.name), sub);
    }
  }

  _unwatch(dir) {
    for (const [d, watcher] of this._watchers) {
      if (d === dir || d.startsWith(dir + path.sep)) {
        watcher.close();
        this._watchers.delete(d);
      }
    }
  }

  _onEvent(root, dir, rel, event, name, deep) {
    if (this._closed) return;
    const file = name == null ? dir : path.join(dir, String(name));
    if (root.file !== null) {
      if (file !== root.file) return;
    } else if (name != null) {
      const base = String(name);
      if (this._opts.ignored(rel === '' ? base : `${rel}/${base}`, base)) return;
      if (event === 'rename' && deep) {
        // Created: watch it (and what is under it); removed: drop its watches.
        let isDir = false;
        try {
          isDir = fs.lstatSync(file).isDirectory();
        } catch {
          this._unwatch(file);
        }
        if (isDir) this._watchDir(root, file, rel === '' ? base : `${rel}/${base}`);
      }
    }
    this._changed.add(file);
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._settled(), this._opts.debounce);
  }

  // No change for `debounce` ms: reload, unless one runs (its end looks
  // again).
  async _settled() {
    this._timer = null;
    if (this._reloading || this._changed.size === 0 || this._closed) return;
    const files = [...this._changed];
    this._changed.clear();
    this.emit('change', files);
    this._reloading = true;
    let result;
    let failure = null;
    try {
      result = await this._reload(files);
    } catch (err) {
      failure = err;
    } finally {
      this._reloading = false;
      if (this._timer === null) process.nextTick(() => this._settled());
    }
    if (failure !== null) this.emit('reloadError', failure);
    else this.emit('reload', result);
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    this._timer = null;
    for (const watcher of this._watchers.values()) watcher.close();
    this._watchers.clear();
    process.nextTick(() => this.emit('close'));
  }
}

function watch(cluster, paths, options) {
  return new Watcher(cluster, validate(paths, options));
}

module.exports = { watch, Watcher };
