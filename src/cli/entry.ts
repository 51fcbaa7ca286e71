/**
 * The dfs process (bin/dfs.js): V8's memory settings for the command, then `main`.
 *
 * Moving bytes allocates buffers outside V8's heap (every socket read, every Noise message) far
 * faster than it allocates objects inside it, and V8's default young generation (tens of MiB,
 * grown on demand) lets those buffers pile up, and survive into the old generation, until
 * full collections free them — measured at about 15 a second during a get, with GC taking 40%
 * of a process's time. Both settings below keep the young generation at 1 MiB, so frequent,
 * cheap minor collections free the buffers while they are young:
 *
 * - Storage nodes and masters (`node start`, `master start`) also start the old generation at
 *   128 MiB, which stops full collections from running every few MiB a node serves. Those flags
 *   only work at process start, so the process replaces itself (execve, same pid) with one that
 *   has them. In a two-process get benchmark these took a node from 7.7 to 4.3 s of CPU per GiB
 *   served (and the raw stream from 260 to 460 MB/s).
 * - Client commands set `--semi-space-growth-factor=1` (which does work at run time: the
 *   young generation then never grows from its 1 MiB start) and expose `gc` for the forced
 *   collections of put and get (footprint.ts). A 512 MiB get, before pooled buffers: 4.6-4.8 s and 141 MB peak
 *   RSS with --optimize-for-size, the previous setting; 3.5 s and 150 MB with this (client CPU
 *   4.7 -> 2.7 s).
 *
 * `cluster` (which only starts other processes) keeps V8's defaults.
 */
import { setFlagsFromString } from 'node:v8';
import { EXIT } from './exit-codes.ts';
import { internalErrorText } from './internal-error.ts';
import { CLIENT_RUNTIME_V8_FLAGS, SERVER_V8_FLAGS } from './v8-flags.ts';

const SERVER_COMMANDS: ReadonlySet<string> = new Set(['master', 'node']);

const command = process.argv[2] ?? '';

// A rejection nobody handled, or an exception nobody caught, is a bug somewhere in dfs: the
// process ends at once, as Node's default would, but with one line (and the internal exit code)
// instead of a stack trace. Servers also log the stack: their stderr is their log. Installed
// only here, in the process adapter, never in code tests import: vitest fails a run on such a
// rejection only while no other 'unhandledRejection' listener exists.
let failing = false;
const internalFailure = (what: string) => (err: unknown) => {
  if (!failing) {
    failing = true;
    try {
      process.stderr.write(internalErrorText(err, { what, showStack: Boolean(process.env.DFS_DEBUG) || SERVER_COMMANDS.has(command) }));
    } catch {
      // stderr is gone too: the exit code is all that is left to say it
    }
  }
  process.exit(EXIT.bug);
};
process.on('unhandledRejection', internalFailure('unhandled rejection'));
process.on('uncaughtException', internalFailure('uncaught exception'));
if (SERVER_COMMANDS.has(command)) {
  // `start` may come after options (`dfs node --dir d start`).
  const starting = process.argv.slice(3).includes('start');
  // Before anything is opened, and inherited across the execve below: what a master or node
  // creates (data directories, keys, chunk files, LevelDB files) is its own alone, 0700/0600.
  if (starting) process.umask(0o077);
  // libuv's pool (4 threads by default) runs fs, LevelDB and argon2 work alike: password checks
  // (at most 2 at once, src/master/access.ts) must leave threads for the Raft log's writes.
  // Read when the pool first starts, so it goes before anything and across the execve below.
  if (starting) process.env.UV_THREADPOOL_SIZE ??= '8';
  if (starting && !SERVER_V8_FLAGS.every((flag) => process.execArgv.includes(flag))) {
    const [execPath, ...rest] = process.argv as [string, ...string[]];
    try {
      process.execve?.(process.execPath, [execPath, ...SERVER_V8_FLAGS, ...process.execArgv, ...rest], process.env);
    } catch {
      // Not allowed here (a permission model, a worker): run with V8's defaults.
    }
  }
} else if (command !== 'cluster') {
  setFlagsFromString(CLIENT_RUNTIME_V8_FLAGS);
}
// A reader that stopped early (`dfs ls | head`) closes the pipe: the output ends there, the
// process does not crash. (A get or cat to stdout stops there too, quietly, with exit 141:
// its bytes did not all arrive; see OutputClosed in io.ts.)
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
});
const { main } = await import('./main.ts');
await main(process.argv.slice(2));
