import { readFileSync } from 'node:fs';
import { cac } from 'cac';
import { DfsError, isDfsError } from '../errors/index.ts';
import { EXIT, exitCodeOf } from './exit-codes.ts';
import { internalErrorText } from './internal-error.ts';
import { findLocalClusterDir } from './cluster-dir.ts';
import { commandName } from './command-name.ts';
import { COMPLETION_SHELLS, type CompletionSpec, completionScript } from './completion.ts';
import { SUBCOMMANDS } from './groups.ts';
import { type CliIO, EXIT_BROKEN_PIPE, OutputClosed, processIO, STDIO_ARG } from './io.ts';

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
  // Known before parsing, so that even a command line cac refuses gets its error as JSON.
  const jsonWanted = argv.includes('--json');
  const cli = cac('dfs');
  cli
    .command('chunk <file>', 'Show how dfs would cut a local file (or - for stdin) into chunks')
    .option('--summary', 'Print only the summary line')
    .option('--min <size>', 'Minimum chunk size (default 512KiB, or a quarter of --avg)')
    .option('--avg <size>', 'Average chunk size, a power of two (default 2MiB)')
    .option('--max <size>', 'Maximum chunk size (default 4MiB, or twice --avg)')
    .example('dfs chunk ./video.mp4 --summary')
    .action(async (file: string, options) => (await import('./commands/chunk.ts')).chunkCommand(file, options, io));
  cli
    .command('cluster <action> [...args]', 'Clusters: init (make a cluster secret), up (start a local cluster of real processes on loopback), down (stop it); add NAME PATH, use NAME, list, rm NAME (named clusters in your config directory)')
    .usage('cluster init|up|down|add|use|list|rm [args] [options]')
    .option('--dir <dir>', 'init: where swarm.key goes (default .); up, down: the same as --cluster')
    .option('--masters <n>', 'up: number of masters of a new cluster: 1, 3 or 5 (default 3)')
    .option('--nodes <n>', 'up: number of storage nodes of a new cluster (default 5)')
    .option('--detach', 'up: run in the background (stop with dfs cluster down)')
    .example('dfs cluster up --detach && dfs status   # a cluster in ./.dfs-local')
    .example('dfs cluster up --cluster /tmp/c --masters 1 --nodes 3')
    .example('dfs cluster down   # the cluster found from here upwards, as other commands find it')
    .example('dfs cluster init --dir /etc/dfs   # then copy /etc/dfs/swarm.key, mode 0600, to every host')
    .example('dfs cluster add prod ./dfs-client.json && dfs cluster use prod   # then: dfs ls / (from anywhere)')
    .action(async (action: string, args: unknown[], options) => {
      const commands = await import('./commands/cluster.ts');
      if (['init', 'up', 'down'].includes(action) && args.length > 0) {
        throw new DfsError('ERR_USAGE', `dfs cluster ${action} takes no argument "${String(args[0])}"; see ${commandName(io)} cluster --help`);
      }
      // One flag names the cluster directory everywhere: --cluster (--dir still works for up and down).
      const dir: string | undefined = options.dir ?? options.cluster;
      if (action === 'init') return commands.clusterInitCommand(options, io);
      if (action === 'up') return commands.clusterUpCommand({ ...options, ...(dir !== undefined ? { dir } : {}) }, io);
      if (action === 'down') return commands.clusterDownCommand({ ...options, dir: await findLocalClusterDir(dir, io) }, io);
      if (action === 'add') return commands.clusterAddCommand(args, options, io);
      if (action === 'use') return commands.clusterUseCommand(args, options, io);
      if (action === 'list' || action === 'ls') return commands.clusterListCommand(args, options, io);
      if (action === 'rm') return commands.clusterRmCommand(args, options, io);
      throw new DfsError('ERR_USAGE', `dfs cluster takes ${(SUBCOMMANDS.cluster ?? []).join(', ')}, not "${action}"; see ${commandName(io)} cluster --help`);
    });
  cli
    .command('master <action>', 'Metadata masters: init (create its identity), start (run one)')
    .usage('master init|start [options]')
    .example('dfs master start --name m1 --dir /var/lib/dfs/m1 --listen /ip4/0.0.0.0/tcp/7001 --peers ADDR2,ADDR3 --swarm-key swarm.key')
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
    .option('--http <host:port>', 'Serve Prometheus metrics (/metrics) and a status page (/) over HTTP here, e.g. 127.0.0.1:9464')
    .action(async (action: string, options) => {
      if (action === 'start') return (await import('./commands/master.ts')).masterStartCommand(options, io);
      if (action === 'init') return (await import('./commands/master.ts')).masterInitCommand(options, io);
      throw new DfsError('ERR_USAGE', `dfs master takes "start" or "init", not "${action}"`);
    });
  cli
    .command('node <action> [node]', 'Storage nodes: start (run one); admit, drain, rm [--force], scrub --now (manage one, by name or peer id)')
    .usage('node start|admit|drain|rm|scrub [node] [options]')
    .example('dfs node drain n3 && dfs nodes   # wait for its chunks to reach 0, then: dfs node rm n3')
    .example('dfs node start --name n1 --dir /var/lib/dfs/n1 --masters ADDR1,ADDR2,ADDR3 --capacity 100GiB')
    .option('--name <name>', 'Name shown in logs (n1, n2, ...)')
    .option('--dir <dir>', 'Data directory (identity and chunks)')
    .option('--listen <multiaddr>', 'Address to listen on, e.g. /ip4/127.0.0.1/tcp/7101')
    .option('--masters <multiaddrs>', 'Every master, comma-separated, each ending in /p2p/<peer id>')
    .option('--capacity <size>', 'Bytes to offer, e.g. 100GiB (default: the free disk)')
    .option('--scrub-interval <ms>', 'Re-hash every chunk within this period (default 604800000: 7 days)')
    .option('--http <host:port>', 'node start: serve Prometheus metrics (/metrics) over HTTP here, e.g. 127.0.0.1:9465')
    .option('--force', 'node rm: remove it even if chunks become under-replicated')
    .option('--now', 'node scrub: re-hash every chunk now')
    .action(async (action: string, node: string | undefined, options) => {
      if (action === 'start') return (await import('./commands/master.ts')).nodeStartCommand(options, io);
      return (await import('./commands/nodes.ts')).nodeAdminCommand(action, node, options, io);
    });
  cli
    .command('put <...paths>', 'Store local files (or - for stdin) in the cluster: into DEST when it is a directory or ends in /')
    .usage('put [-f] [-r] SOURCE... DEST')
    .option('-f, --force', 'Replace existing files')
    .option('-r, --recursive', 'Store local directories and everything in them')
    .example('dfs put ./photo.jpg /photos/')
    .example('dfs put -r ./album /photos/   # /photos/album/...')
    .example('tar c dir | dfs put - /backups/dir.tar')
    .action(async (paths: string[], options) => (await import('./commands/data.ts')).putCommand(paths, options, io));
  cli
    .command('get <...paths>', 'Fetch files from the cluster to a local path (into it when it is a directory), or to stdout (-)')
    .usage('get [-f] [-r] SOURCE... DEST')
    .option('-f, --force', 'Replace existing local files')
    .option('-r, --recursive', 'Fetch remote directories and everything in them')
    .example('dfs get /photos/a.jpg /photos/b.jpg ./   # ./a.jpg, ./b.jpg')
    .example('dfs get -r /photos ./backup')
    .action(async (paths: string[], options) => (await import('./commands/data.ts')).getCommand(paths, options, io));
  cli
    .command('cat <...paths>', 'Write files from the cluster, verified, to stdout')
    .example('dfs cat /logs/app.log | grep error')
    .action(async (paths: string[], options) => (await import('./commands/data.ts')).catCommand(paths, options, io));
  cli
    .command('rebalance', 'Even out storage node usage: copies move from the fullest nodes to the emptiest')
    .option('--max <chunks>', 'At most this many chunks (default 10000)')
    .action(async (options) => (await import('./commands/nodes.ts')).rebalanceCommand(options, io));
  cli
    .command('nodes', 'Every storage node: state, space, chunks, last heartbeat, repairs')
    .action(async (options) => (await import('./commands/nodes.ts')).nodesCommand(options, io));
  cli
    .command('df', 'Cluster space: capacity, used and free over the storage nodes, and chunk health')
    .option('-b, --bytes', 'Sizes in bytes')
    .action(async (options) => (await import('./commands/nodes.ts')).dfCommand(options, io));
  cli
    .command('status', "Each master's role, term, indexes and lag; nodes and chunk health (exit 1 if anything is under-replicated)")
    .action(async (options) => (await import('./commands/namespace.ts')).statusCommand(options, io));
  cli
    .command('mkdir <...paths>', 'Make directories')
    .option('-p, --parents', 'Make parent directories as needed; no error if it exists')
    .example('dfs mkdir -p /photos/2026')
    .action(async (paths: string[], options) => (await import('./commands/namespace.ts')).mkdirCommand(paths, options, io));
  cli
    .command('ls [path]', 'List a directory')
    .option('-l, --long', 'Kind, size, time and owner')
    .option('--stale', 'Read from any master, possibly behind the leader')
    .action(async (path: string | undefined, options) => (await import('./commands/namespace.ts')).lsCommand(path, options, io));
  cli
    .command('stat <path>', 'Show a file or directory')
    .option('--stale', 'Read from any master, possibly behind the leader')
    .action(async (path: string, options) => (await import('./commands/namespace.ts')).statCommand(path, options, io));
  cli
    .command('rm <...paths>', 'Remove files or directories')
    .option('-r, --recursive', 'Remove directories and everything in them')
    .option('-f, --force', 'No error for a path that does not exist')
    .example('dfs rm -rf /tmp/scratch')
    .action(async (paths: string[], options) => (await import('./commands/namespace.ts')).rmCommand(paths, options, io));
  cli
    .command('mv <...paths>', 'Move or rename, atomically: into DEST when it is a directory')
    .usage('mv [-f] SOURCE... DEST')
    .option('-f, --force', 'Replace an existing file')
    .example('dfs mv /inbox/a.txt /docs   # /docs/a.txt')
    .action(async (paths: string[], options) => (await import('./commands/namespace.ts')).mvCommand(paths, options, io));
  cli
    .command('du [...paths]', 'Bytes and files under each path (default /), and under each directory below it')
    .option('-s, --summarize', 'Only a total for each path')
    .option('-b, --bytes', 'Sizes in bytes')
    .example('dfs du -s /photos')
    .action(async (paths: string[], options) => (await import('./commands/namespace.ts')).duCommand(paths, options, io));
  cli
    .command('login [user] [...rest]', 'Log in to the cluster (password from the prompt, --password-file or DFS_PASSWORD; never the command line)')
    .option('--password-file <file>', 'Read the password from this file (one line)')
    .action(async (user: string | undefined, rest: unknown[], options) => (await import('./commands/users.ts')).loginCommand(user, rest, options, io));
  cli
    .command('logout', "Delete this cluster's saved login")
    .option('--everywhere', 'First end every login of yours, on every machine')
    .action(async (options) => (await import('./commands/users.ts')).logoutCommand(options, io));
  cli
    .command('whoami', 'Who the masters take you for: user, roles, login expiry')
    .action(async (options) => (await import('./commands/users.ts')).whoamiCommand(options, io));
  cli
    .command('user <action> [...args]', 'Users (admin): add NAME [--role R], rm, passwd [NAME], disable, enable, list, roles NAME ROLE..., quota NAME [--bytes SIZE] [--files N]')
    .option('--role <role>', 'user add: admin, writer or reader (repeat for several)')
    .option('--password-file <file>', 'The (new) password, from this file')
    .option('--old-password-file <file>', 'user passwd of yourself: the current password, from this file (or DFS_OLD_PASSWORD)')
    .option('--bytes <size>', 'user quota: most bytes stored, e.g. 10GiB, or none')
    .option('--files <n>', 'user quota: most files, or none')
    .example('dfs user add alice --role writer')
    .action(async (action: string, args: unknown[], options) => (await import('./commands/users.ts')).userCommand(action, args, options, io));
  cli
    .command('grant <path> <principal> <level>', 'Give a user (or @role) read, write or admin on a path and below')
    .example('dfs grant /team alice write')
    .action(async (path: string, principal: string, level: string, options) => (await import('./commands/users.ts')).grantCommand(path, principal, level, options, io));
  cli
    .command('revoke <path> <principal> [level]', "Take back a grant (without a level: all of the principal's grants on the path)")
    .action(async (path: string, principal: string, level: string | undefined, options) => (await import('./commands/users.ts')).revokeCommand(path, principal, level, options, io));
  cli
    .command('acl <path>', "A path's owner and the grants that apply to it (its own and inherited)")
    .action(async (path: string, options) => (await import('./commands/users.ts')).aclCommand(path, options, io));
  cli
    .command('tour', 'A one-minute guided tour on real processes: cluster up, put, a node and the Raft leader killed, repair, get, down (npm start)')
    .option('--mib <n>', 'Size of the demo file in MiB (default 64)')
    .option('--keep', 'Keep the scratch directory')
    .action(async (options) => (await import('./commands/tour.ts')).tourCommand(options, io));
  cli
    .command('help [command]', 'Help for dfs, or for one command')
    .example('dfs help put')
    .action(async (command: string | undefined) => {
      if (command !== undefined && !cli.commands.some((c) => c.name === command)) {
        throw new DfsError('ERR_USAGE', `unknown command "${command}"; see ${commandName(io)} help`);
      }
      // A fresh parse of "COMMAND --help" prints that command's help (or the global one).
      return run(command === undefined ? ['--help'] : [command, '--help'], io);
    });
  cli
    .command('version', 'The version of dfs and of Node.js')
    .action(() => {
      if (jsonWanted) io.stdout.write(JSON.stringify({ version: VERSION, node: process.version, platform: `${process.platform}-${process.arch}` }) + '\n');
      else withConsoleTo(io, () => cli.outputVersion());
    });
  cli
    .command('completion <shell>', 'A shell completion script: dfs completion bash|zsh')
    .usage('completion bash|zsh')
    .example('eval "$(dfs completion bash)"   # in ~/.bashrc')
    .example('eval "$(dfs completion zsh)"    # in ~/.zshrc')
    .action((shell: string) => {
      if (!(COMPLETION_SHELLS as readonly string[]).includes(shell)) throw new DfsError('ERR_USAGE', `dfs completion takes ${COMPLETION_SHELLS.join(' or ')}, not "${shell}"`);
      const specs: CompletionSpec[] = cli.commands.map((c) => ({
        name: c.name,
        subcommands: c.name === 'help' ? cli.commands.map((x) => x.name) : (SUBCOMMANDS[c.name] ?? []),
        options: c.options.flatMap((o) => o.rawName.split(/[ ,]+/).filter((w) => w.startsWith('-'))),
      }));
      const globals = cli.globalCommand.options.flatMap((o) => o.rawName.split(/[ ,]+/).filter((w) => w.startsWith('-')));
      io.stdout.write(completionScript(shell as (typeof COMPLETION_SHELLS)[number], specs, globals));
    });
  cli.option('--json', 'Print JSON (data on stdout; an error as one object {"ok":false,"code","message"} on stderr)');
  cli.option('-q, --quiet', 'No progress bars and no informational lines');
  cli.option('--cluster <dir>', 'The cluster: a directory, a dfs-client.json or a name from dfs cluster list (default: DFS_CLUSTER, else found from here upwards, else dfs cluster use)');
  cli.option('--admin-key', 'Speak with the admin key beside the client config (admin/peer-key; the masters take it as user admin): to make the first admin user');
  cli.option('--swarm-key <file>', 'The cluster secret, a swarm key file (default: DFS_SWARM_KEY, else the client config\'s "swarmKey")');
  cli.option('--insecure', 'Run (master, node, cluster up) or connect without a cluster secret; servers warn at every start');
  cli.option('--secret-mode <mode>', 'How the secret is checked: handshake (default, bound into Noise) or pnet');
  cli.help();
  cli.version(VERSION);
  try {
    const parsed = withConsoleTo(io, () => cli.parse(['node', 'dfs', ...argv.map((a) => (a === '-' ? STDIO_ARG : a))], { run: false }));
    if (parsed.options.help || parsed.options.version) return EXIT.ok;
    if (!cli.matchedCommand) {
      if (parsed.args.length > 0) throw new DfsError('ERR_USAGE', `unknown command "${parsed.args[0]}"; see ${commandName(io)} --help`);
      withConsoleTo(io, () => cli.outputHelp());
      return EXIT.ok;
    }
    // A help command's own run returns its exit code; other commands return nothing.
    const code: unknown = await cli.runMatchedCommand();
    return typeof code === 'number' ? code : EXIT.ok;
  } catch (err) {
    return reportError(err, io, jsonWanted);
  }
}

/**
 * A failure as the user sees it: one line on stderr, `dfs: MESSAGE [ERR_CODE]`, or with --json
 * one object on stderr, `{"ok":false,"code":"ERR_CODE","message":"MESSAGE"}` (stderr, so that
 * stdout holds only data, even when a command printed some before failing, as status does).
 * The exit code is the same either way (exit-codes.ts).
 */
function reportError(err: unknown, io: CliIO, json: boolean): number {
  // stdout's reader went away (dfs get f - | head): nothing to say, and nobody to say it to.
  if (err instanceof OutputClosed) return EXIT_BROKEN_PIPE;
  const say = (code: string, message: string, text: string): void =>
    void io.stderr.write(json ? JSON.stringify({ ok: false, code, message }) + '\n' : text);
  if (isDfsError(err)) {
    say(err.code, err.message, `dfs: ${err.message} [${err.code}]\n`);
    return exitCodeOf(err.code);
  }
  if (err instanceof Error && err.name === 'CACError') {
    const message = `${err.message}; see ${commandName(io)} --help`;
    say('ERR_USAGE', message, `dfs: ${message} [ERR_USAGE]\n`);
    return EXIT.usage;
  }
  const text = internalErrorText(err, { showStack: Boolean(io.env.DFS_DEBUG) });
  say('ERR_INTERNAL', text.split('\n')[0]!.replace(/^dfs: internal error: /, '').replace(/ \[ERR_INTERNAL\]$/, ''), text);
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
