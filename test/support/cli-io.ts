import { Readable } from 'node:stream';
import type { CliIO } from '../../src/cli/index.ts';

/** A CliIO that keeps what the CLI writes (no TTY), with `env` as its whole environment. */
export function captureIO(env: Record<string, string> = {}, stdin: NodeJS.ReadableStream = Readable.from([])): CliIO & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (t: string) => (out += t), isTTY: false },
    stderr: { write: (t: string) => (err += t), isTTY: false },
    stdin,
    env,
    out: () => out,
    err: () => err,
  };
}
