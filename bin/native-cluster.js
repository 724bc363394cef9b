#!/usr/bin/env node
'use strict';
// native-cluster CLI: runs an unmodified server script on N workers with the
// native primary (bin/cli/supervise.js), or sends a command to a running one
// (bin/cli/commands.js). Arguments and help: bin/cli/args.js.

const path = require('node:path');
const { parseArgs, help, UsageError } = require('./cli/args.js');
const { SUBCOMMANDS, subcommand } = require('./cli/commands.js');
const { run } = require('./cli/supervise.js');

function main(argv) {
  if (SUBCOMMANDS.includes(argv[0])) {
    subcommand(argv).then((code) => { process.exitCode = code; }, (err) => {
      if (!(err instanceof UsageError)) throw err;
      process.stderr.write(`native-cluster: ${err.message}\nRun native-cluster --help for usage.\n`);
      process.exitCode = 2;
    });
    return;
  }
  let opts;
  try {
    opts = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`native-cluster: ${err.message}\nRun native-cluster --help for usage.\n`);
    process.exitCode = 2;
    return;
  }
  if (opts.help) {
    process.stdout.write(help());
    return;
  }
  if (opts.version) {
    process.stdout.write(`${require('../package.json').version}\n`);
    return;
  }

  const app = path.resolve(opts.app);
  try {
    require.resolve(app);
  } catch {
    process.stderr.write(`native-cluster: cannot find ${opts.app} (${app})\n`);
    process.exitCode = 2;
    return;
  }

  const cluster = require('../');
  run(cluster, app, opts);
}

if (require.main === module) main(process.argv.slice(2));

module.exports = { parseArgs, help };
