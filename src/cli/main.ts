import { readFileSync } from 'node:fs';
import { cac } from 'cac';
import { DfsError, isDfsError } from '../errors/index.ts';
import { EXIT, exitCodeOf } from './exit-codes.ts';
import { internalErrorText } from './internal-error.ts';
import { type CliIO, processIO, STDIO_ARG } from './io.ts';

export const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/**
 * The `dfs` command line. Parses `argv` (the arguments after the program name), runs the
 * command, and returns the exit code, also setting `process.exitCode`; it never calls
 * `process.exit`, so tests run it in-process. A user-facing error prints one line, no stack.
 */
export async function main(argv: readonly string[], io: CliIO = processIO): Promise<number> {
  const code = await run(argv, io);
  process.exitCode = code;
  return code;
}

// Each command's module loads when the command runs: a client command never loads the master's
// Raft, LevelDB or local-cluster code, which keeps its footprint down.
async function run(argv: readonly string[], io: CliIO): Promise<number> {
  const cli = cac('dfs');
  cli
    .command('chunk <file>', 'Show how dfs would cut a local file (or - for stdin) into chunks')
    .option('--json', 'Print one JSON object')
    .option('--summary', 'Print only the summary line')
    .option('--min <size>', 'Minimum chunk size (default 256KiB)')
    .option('--avg <size>', 'Average chunk size, a power of two (default 1MiB)')
    .option('--max <size>', 'Maximum chunk size (default 4MiB)')
    .example('dfs chunk ./video.mp4 --summary')
    .action(async (file: string, options) => (await import('./commands/chunk.ts')).chunkCommand(file, options, io));
  cli
    .command('cluster <action>', 'Make a cluster secret (init), or start (up) or stop (down) a local cluster of real processes on loopback')
    .option('--dir <dir>', 'Cluster directory (default .dfs-local; for init, where swarm.key goes: default .)')
    .option('--masters <n>', 'Number of masters: 1, 3 or 5 (default 3)')
    .option('--nodes <n>', 'Number of storage nodes (default 5)')
    .option('--detach', 'Run in the background (stop with dfs cluster down)')
    .example('dfs cluster up --detach && dfs status')
    .example('dfs cluster init --dir /etc/dfs   # then copy /etc/dfs/swarm.key, mode 0600, to every host')
    .action(async (action: string, options) => {
      if (action === 'init') return (await import('./commands/cluster.ts')).clusterInitCommand(options, io);
      if (action === 'up') return (await import('./commands/cluster.ts')).clusterUpCommand(options, io);
      if (action === 'down') return (await import('./commands/cluster.ts')).clusterDownCommand(options, io);
      throw new DfsError('ERR_USAGE', `dfs cluster takes "init", "up" or "down", not "${action}"`);
    });
  cli
    .command('master <action>', 'Run a metadata master (start), or create its identity (init)')
    .option('--name <name>', 'Name shown in dfs status (m1, m2, ...)')
    .option('--dir <dir>', 'Data directory (identity and Raft log)')
    .option('--listen <multiaddr>', 'Address to listen on, e.g. /ip4/127.0.0.1/tcp/7001')
    .option('--peers <multiaddrs>', 'The other masters, comma-separated, each ending in /p2p/<peer id>')
    .option('--snapshot-every <entries>', 'Snapshot and compact the Raft log every N entries (default 10000)')
    .option('--tick-ms <ms>', 'Raft tick (default 50; elections after 10-20 ticks)')
    .option('--gc-grace-ms <ms>', 'Collect unreferenced chunks untouched this long (default 600000)')
    .option('--suspect-after <ms>', 'A storage node silent this long gets no new data (default 3000)')
    .option('--dead-after <ms>', 'A storage node silent this long is dead: its chunks are copied elsewhere (default 10000)')
    .option('--admit-nodes <mode>', 'auto: new storage nodes get data at once; manual: after dfs node admit (default manual)')
    .option('--admin-peers <ids>', 'Peer ids, comma-separated, allowed to admit, drain, remove and scrub nodes (besides the masters)')
    .action(async (action: string, options) => {
      if (action === 'start') return (await import('./commands/master.ts')).masterStartCommand(options, io);
      if (action === 'init') return (await import('./commands/master.ts')).masterInitCommand(options, io);
      throw new DfsError('ERR_USAGE', `dfs master takes "start" or "init", not "${action}"`);
    });
  cli
    .command('node <action> [node]', 'Run a storage node (start), or manage one: admit, drain, rm [--force], scrub --now')
    .option('--name <name>', 'Name shown in logs (n1, n2, ...)')
    .option('--dir <dir>', 'Data directory (identity and chunks)')
    .option('--listen <multiaddr>', 'Address to listen on, e.g. /ip4/127.0.0.1/tcp/7101')
    .option('--masters <multiaddrs>', 'Every master, comma-separated, each ending in /p2p/<peer id>')
    .option('--capacity <size>', 'Bytes to offer, e.g. 100GiB (default: the free disk)')
    .option('--scrub-interval <ms>', 'Re-hash every chunk within this period (default 604800000: 7 days)')
    .option('--force', 'node rm: remove it even if chunks become under-replicated')
    .option('--now', 'node scrub: re-hash every chunk now')
    .action(async (action: string, node: string | undefined, options) => {
      if (action === 'start') return (await import('./commands/master.ts')).nodeStartCommand(options, io);
      return (await import('./commands/nodes.ts')).nodeAdminCommand(action, node, options, io);
    });
  cli
    .command('put <local> <remote>', 'Store a local file (or - for stdin) in the cluster')
    .option('--json', 'Print a JSON summary')
    .example('dfs put ./photo.jpg /photos/')
    .action(async (local: string, remote: string, options) => (await import('./commands/data.ts')).putCommand(local, remote, options, io));
  cli
    .command('get <remote> <local>', 'Fetch a file from the cluster to a local path (or - for stdout)')
    .option('--json', 'Print a JSON summary')
    .action(async (remote: string, local: string, options) => (await import('./commands/data.ts')).getCommand(remote, local, options, io));
  cli
    .command('rebalance', 'Even out storage node usage: copies move from the fullest nodes to the emptiest')
    .option('--max <chunks>', 'At most this many chunks (default 10000)')
    .action(async (options) => (await import('./commands/nodes.ts')).rebalanceCommand(options, io));
  cli
    .command('nodes', 'Every storage node: state, space, chunks, last heartbeat, repairs')
    .option('--json', 'Print JSON')
    .action(async (options) => (await import('./commands/nodes.ts')).nodesCommand(options, io));
  cli
    .command('status', "Each master's role, term, indexes and lag; nodes and chunk health (exit 1 if anything is under-replicated)")
    .option('--json', 'Print JSON')
    .action(async (options) => (await import('./commands/namespace.ts')).statusCommand(options, io));
  cli
    .command('mkdir <path>', 'Make a directory')
    .option('-p, --parents', 'Make parent directories as needed; no error if it exists')
    .action(async (path: string, options) => (await import('./commands/namespace.ts')).mkdirCommand(path, options, io));
  cli
    .command('ls [path]', 'List a directory')
    .option('-l, --long', 'Kind, size, time and owner')
    .option('--json', 'One JSON object per entry')
    .option('--stale', 'Read from any master, possibly behind the leader')
    .action(async (path: string | undefined, options) => (await import('./commands/namespace.ts')).lsCommand(path, options, io));
  cli
    .command('stat <path>', 'Show a file or directory')
    .option('--json', 'Print JSON')
    .option('--stale', 'Read from any master, possibly behind the leader')
    .action(async (path: string, options) => (await import('./commands/namespace.ts')).statCommand(path, options, io));
  cli
    .command('rm <path>', 'Remove a file or directory')
    .option('-r, --recursive', 'Remove a directory and everything in it')
    .action(async (path: string, options) => (await import('./commands/namespace.ts')).rmCommand(path, options, io));
  cli.command('mv <from> <to>', 'Move or rename, atomically').action(async (from: string, to: string, options) => (await import('./commands/namespace.ts')).mvCommand(from, to, options, io));
  cli.option('--cluster <dir>', 'The cluster: a directory or dfs-client.json (default: found from here upwards, or DFS_CLUSTER)');
  cli.option('--swarm-key <file>', 'The cluster secret, a swarm key file (default: DFS_SWARM_KEY, else the client config\'s "swarmKey")');
  cli.option('--insecure', 'Run (master, node, cluster up) or connect without a cluster secret; servers warn at every start');
  cli.option('--secret-mode <mode>', 'How the secret is checked: handshake (default, bound into Noise) or pnet');
  cli.help();
  cli.version(VERSION);
  try {
    const parsed = withConsoleTo(io, () => cli.parse(['node', 'dfs', ...argv.map((a) => (a === '-' ? STDIO_ARG : a))], { run: false }));
    if (parsed.options.help || parsed.options.version) return EXIT.ok;
    if (!cli.matchedCommand) {
      if (parsed.args.length > 0) throw new DfsError('ERR_USAGE', `unknown command "${parsed.args[0]}"; see dfs --help`);
      withConsoleTo(io, () => cli.outputHelp());
      return EXIT.ok;
    }
    await cli.runMatchedCommand();
    return EXIT.ok;
  } catch (err) {
    return reportError(err, io);
  }
}

function reportError(err: unknown, io: CliIO): number {
  if (isDfsError(err)) {
    io.stderr.write(`dfs: ${err.message} [${err.code}]\n`);
    return exitCodeOf(err.code);
  }
  if (err instanceof Error && err.name === 'CACError') {
    io.stderr.write(`dfs: ${err.message}; see dfs --help [ERR_USAGE]\n`);
    return EXIT.usage;
  }
  io.stderr.write(internalErrorText(err, { showStack: Boolean(io.env.DFS_DEBUG) }));
  return EXIT.bug;
}

/** cac prints help and version with console.info; route that to the injected stdout. */
function withConsoleTo<T>(io: CliIO, fn: () => T): T {
  const original = console.info;
  console.info = (...args: unknown[]) => void io.stdout.write(args.join(' ') + '\n');
  try {
    return fn();
  } finally {
    console.info = original;
  }
}
