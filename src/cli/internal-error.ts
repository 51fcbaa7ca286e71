import { isDfsError } from '../errors/index.ts';

/**
 * The one line (newline included) for a failure that is a bug in dfs: an error no command
 * expected, a rejection nobody handled, an exception nobody caught. `what` names the last two.
 * The stack follows only when `showStack` (DFS_DEBUG=1, or a server's log).
 */
export function internalErrorText(err: unknown, options: { what?: string; showStack?: boolean } = {}): string {
  const message = isDfsError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
  const line = `dfs: internal error: ${options.what ? `${options.what}: ` : ''}${message.replace(/\s+/g, ' ').trim()} (a bug: please report it; DFS_DEBUG=1 shows the stack) [ERR_INTERNAL]\n`;
  const stack = options.showStack && err instanceof Error && err.stack ? `${err.stack}\n` : '';
  return line + stack;
}
