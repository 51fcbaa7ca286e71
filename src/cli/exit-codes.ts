import type { ErrorCode } from '../errors/index.ts';

/** Process exit codes, stable for scripts. Anything unexpected (a bug) is 70 (EX_SOFTWARE). */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  notFound: 3,
  corrupt: 4,
  noSpace: 5,
  /** Not logged in, or the login expired: dfs login. */
  unauthenticated: 6,
  /** Logged in, not allowed: ask for a grant. */
  forbidden: 7,
  quota: 8,
  bug: 70,
} as const;

export function exitCodeOf(code: ErrorCode): number {
  switch (code) {
    case 'ERR_USAGE':
    case 'ERR_INVALID_ARGUMENT':
    case 'ERR_INVALID_CHUNK_ID':
      return EXIT.usage;
    case 'ERR_INVALID_PATH':
    case 'ERR_INVALID_MANIFEST':
      return EXIT.usage;
    case 'ERR_NOT_FOUND':
    case 'ERR_CHUNK_NOT_FOUND':
      return EXIT.notFound;
    case 'ERR_EXISTS':
    case 'ERR_NOT_DIR':
    case 'ERR_IS_DIR':
    case 'ERR_NOT_EMPTY':
    case 'ERR_STALE_REQUEST':
    case 'ERR_NOT_LEADER':
    case 'ERR_NO_QUORUM':
      return EXIT.failure;
    case 'ERR_CHUNK_CORRUPT':
      return EXIT.corrupt;
    case 'ERR_NO_SPACE':
      return EXIT.noSpace;
    case 'ERR_PROTOCOL':
    case 'ERR_TIMEOUT':
    case 'ERR_PEER_UNREACHABLE':
    case 'ERR_STREAM_CLOSED':
    case 'ERR_ABORTED':
    case 'ERR_INTERNAL':
    case 'ERR_OVERLOADED':
    case 'ERR_PIPELINE':
    case 'ERR_UNDER_REPLICATED':
    case 'ERR_UNAVAILABLE':
    case 'ERR_FILE_CHANGED':
      return EXIT.failure;
    case 'ERR_CHUNK_TOO_LARGE':
    case 'ERR_IO':
    case 'ERR_STORE_CLOSED':
    case 'ERR_RAFT_STATE_MISSING':
      return EXIT.failure;
    case 'ERR_UNAUTHENTICATED':
    case 'ERR_TOKEN_EXPIRED':
      return EXIT.unauthenticated;
    case 'ERR_FORBIDDEN':
      return EXIT.forbidden;
    case 'ERR_QUOTA':
      return EXIT.quota;
  }
}
