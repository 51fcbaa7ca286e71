import { readFileSync } from 'node:fs';
import { cac } from 'cac';
import { DfsError, isDfsError } from '../errors/index.ts';
import { chunkCommand } from './commands/chunk.ts';
import { EXIT, exitCodeOf } from './exit-codes.ts';
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
    .action((file: string, options) => chunkCommand(file, options, io));
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
  const message = err instanceof Error ? err.message : String(err);
  io.stderr.write(`dfs: unexpected error: ${message} (a bug: please report it; DFS_DEBUG=1 shows the stack)\n`);
  if (io.env.DFS_DEBUG) io.stderr.write(`${err instanceof Error ? err.stack : ''}\n`);
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
