import { readFile } from 'node:fs/promises';
import { MAX_PASSWORD_BYTES } from '../auth/index.ts';
import { DfsError } from '../errors/index.ts';
import type { CliIO } from './io.ts';

/**
 * Where a password comes from. Never the command line: an argument shows in `ps` to every user of
 * the machine and lands in shell history. So: a file (--password-file), the environment
 * (DFS_PASSWORD, for scripts: /proc/<pid>/environ is readable by the same user only), or a prompt
 * on the terminal with echo off.
 */
export const PASSWORD_ENV = 'DFS_PASSWORD';
/** The current password for `dfs user passwd` of your own account, in scripts. */
export const OLD_PASSWORD_ENV = 'DFS_OLD_PASSWORD';

export interface PasswordSource {
  /** --password-file FILE (cac hands a number for a name made of digits). */
  readonly file?: string | number;
  /** The environment variable to read (PASSWORD_ENV or OLD_PASSWORD_ENV). */
  readonly envName: string;
  /** The prompt shown on the terminal, e.g. "password for alice: ". */
  readonly prompt: string;
  /** Ask twice on a terminal and refuse a mismatch (a new password). */
  readonly confirm?: boolean;
}

/** A stdin that is a terminal: raw mode turns the line discipline's echo off. */
interface TtyInput extends NodeJS.ReadableStream {
  readonly isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
}

/** Reads a password: --password-file, else the environment, else the terminal (echo off). */
export async function readPassword(io: CliIO, source: PasswordSource): Promise<string> {
  if (source.file !== undefined) return checked(await fromFile(String(source.file)), `--password-file ${String(source.file)}`);
  const env = io.env[source.envName];
  if (env !== undefined && env !== '') return checked(env, source.envName);
  const first = checked(await promptHidden(io, source.prompt), 'the password typed');
  if (!source.confirm) return first;
  const second = await promptHidden(io, 'again: ');
  if (second !== first) throw new DfsError('ERR_USAGE', 'the two passwords differ; nothing changed');
  return first;
}

async function fromFile(path: string): Promise<string> {
  if (path === '') throw new DfsError('ERR_USAGE', '--password-file needs a file');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DfsError(code === 'ENOENT' ? 'ERR_NOT_FOUND' : 'ERR_IO', `cannot read the password file ${path}: ${code ?? (err as Error).message}`);
  }
  // One trailing line end is the file's, not the password's (echo pw > file writes one).
  return text.replace(/\r?\n$/, '');
}

function checked(password: string, from: string): string {
  if (password === '') throw new DfsError('ERR_USAGE', `the password from ${from} is empty`);
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) throw new DfsError('ERR_USAGE', `the password from ${from} is longer than ${MAX_PASSWORD_BYTES} bytes`);
  return password;
}

const ENTER = new Set(['\r', '\n', '\u0004']); // Enter, or Ctrl-D
const INTERRUPT = '\u0003'; // Ctrl-C (raw mode delivers it as a character, not SIGINT)
const ERASE = new Set(['\u007f', '\b']);

/**
 * Prompts on stderr and reads one line from a terminal with echo off (raw mode), handling
 * backspace, Enter and Ctrl-C. Not a terminal: ERR_USAGE naming the other sources.
 */
export function promptHidden(io: CliIO, prompt: string): Promise<string> {
  const stdin = io.stdin as TtyInput;
  if (!stdin.isTTY || typeof stdin.setRawMode !== 'function') {
    return Promise.reject(new DfsError('ERR_USAGE', `no password given and stdin is not a terminal: use --password-file FILE or ${PASSWORD_ENV} (never the command line)`));
  }
  io.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  return new Promise<string>((ok, fail) => {
    let typed: string[] = [];
    const finish = (): void => {
      stdin.off('data', onData);
      stdin.setRawMode?.(false);
      stdin.pause();
      io.stderr.write('\n');
    };
    const onData = (chunk: Buffer | string): void => {
      for (const ch of typeof chunk === 'string' ? chunk : chunk.toString('utf8')) {
        if (ENTER.has(ch)) {
          finish();
          ok(typed.join(''));
          return;
        }
        if (ch === INTERRUPT) {
          finish();
          fail(new DfsError('ERR_ABORTED', 'cancelled; nothing changed'));
          return;
        }
        if (ERASE.has(ch)) typed = typed.slice(0, -1);
        else typed.push(ch);
      }
    };
    stdin.on('data', onData);
  });
}
