/** Where the CLI writes: injected so tests run `main` in-process and read what it printed. */
export interface CliIO {
  readonly stdout: { write(text: string): unknown; readonly isTTY?: boolean };
  readonly stderr: { write(text: string): unknown; readonly isTTY?: boolean };
  readonly stdin: NodeJS.ReadableStream;
  readonly env: Readonly<Record<string, string | undefined>>;
}

export const processIO: CliIO = {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
};

/**
 * How a bare "-" (stdin/stdout) reaches a command: cac's parser drops a lone "-", so `main`
 * swaps it for this token before parsing.
 */
export const STDIO_ARG = '\u0000-';
