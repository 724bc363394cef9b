'use strict';
// --watch: the library's cluster.watch() on the app's directory or the given
// paths, reloading through the CLI's own reload (so that the slots follow
// and a reload under way is not doubled), named in one status line per
// reload.

const path = require('node:path');

const shown = (file) => path.relative(process.cwd(), file) || '.';

// "src/a.js changed", "src/a.js, src/b.js and 3 more changed".
function describe(files) {
  const names = files.slice(0, 2).map(shown).join(', ');
  return `${names}${files.length > 2 ? ` and ${files.length - 2} more` : ''} changed`;
}

// `paths` empty: the app's directory. A path that cannot be watched ends
// the CLI (exit 1) before any worker starts.
function watchFiles(cluster, app, paths, reload, log) {
  const targets = paths.length > 0 ? paths.map((p) => path.resolve(p)) : [path.dirname(app)];
  let watcher;
  try {
    watcher = cluster.watch(targets, { reload: (files) => reload(describe(files)) });
  } catch (err) {
    // A system error as "no such file or directory", without the path twice.
    const reason = err.syscall ? err.message.replace(/^\w+: /, '').replace(/, \w+ '.*'$/, '') : err.message;
    log(`--watch: cannot watch ${err.path ? shown(err.path) : targets.map(shown).join(', ')}: ${reason}`);
    process.exit(1);
  }
  watcher.on('error', (err) => log(`--watch: ${err.message}`));
  log(`watching ${targets.map(shown).join(', ')} (.git and node_modules ignored)`);
  return watcher;
}

module.exports = { watchFiles };
