/** Where the CLI writes: injected so tests run `main` in-process and read what it printed. */
export interface CliIO {
  readonly stdout: { write(data: string | Uint8Array): unknown; readonly isTTY?: boolean };
  readonly stderr: { write(text: string): unknown; readonly isTTY?: boolean; readonly columns?: number };
  readonly stdin: NodeJS.ReadableStream;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The path the program ran as (process.argv[1]): how hints name it (command-name.ts). */
  readonly argv1?: string | undefined;
}

export const processIO: CliIO = {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  argv1: process.argv[1],
};

/**
 * How a bare "-" (stdin/stdout) reaches a command: cac's parser drops a lone "-", so `main`
 * swaps it for this token before parsing.
 */
export const STDIO_ARG = '\u0000-';

/** The flags every command takes (global options). */
export interface OutputFlags {
  /** Print one JSON object (or one per line, for lists) instead of text; errors too (main.ts). */
  json?: boolean;
  /** No progress and no informational lines: only the data asked for, and errors. */
  quiet?: boolean;
}

/**
 * An informational line ("stored /a: ...", "removed 3 entries"): stderr, so stdout carries only
 * data a script may parse; nothing with --quiet or --json.
 */
export function info(io: CliIO, flags: OutputFlags, line: string): void {
  if (!flags.quiet && !flags.json) io.stderr.write(`${line}\n`);
}

/**
 * Exit code when the reader of stdout went away early (`dfs get f - | head`): the one a shell
 * reports for a process killed by SIGPIPE (128 + 13), and no message.
 */
export const EXIT_BROKEN_PIPE = 141;

/** stdout's reader went away (EPIPE): the command stops; main exits EXIT_BROKEN_PIPE, silently. */
export class OutputClosed extends Error {
  constructor() {
    super('stdout closed');
    this.name = 'OutputClosed';
  }
}
