/**
 * Typed errors with stable codes. Every error a user or a peer can see is a DfsError with one of
 * these codes; the CLI maps the code to a one-line message and an exit code, and wire protocols
 * carry the code verbatim. Codes are part of the public contract: never rename one.
 */
export const ERROR_CODES = {
  ERR_INVALID_ARGUMENT: 'a parameter or option is out of range or malformed',
  ERR_CHUNK_CORRUPT: 'chunk bytes do not match their BLAKE3 id',
  ERR_CHUNK_NOT_FOUND: 'no such chunk in this store',
  ERR_CHUNK_TOO_LARGE: 'chunk exceeds the size limit',
  ERR_INVALID_CHUNK_ID: 'not a chunk id (64 lowercase hex characters)',
  ERR_NO_SPACE: 'the disk is full',
  ERR_IO: 'a disk operation failed',
  ERR_STORE_CLOSED: 'the store is closed',
  ERR_NOT_FOUND: 'no such file or directory',
  ERR_USAGE: 'the command line is not valid',
  ERR_INVALID_PATH: 'not a valid dfs path',
  ERR_EXISTS: 'the path already exists',
  ERR_NOT_DIR: 'a path component is not a directory',
  ERR_IS_DIR: 'the path is a directory',
  ERR_NOT_EMPTY: 'the directory is not empty',
  ERR_INVALID_MANIFEST: 'the file manifest is malformed',
  ERR_STALE_REQUEST: 'a newer request from this client was already applied',
  ERR_NOT_LEADER: 'this master is not the leader',
  ERR_NO_QUORUM: 'no quorum of masters answered',
  ERR_PROTOCOL: 'a peer sent a malformed or oversized message',
  ERR_TIMEOUT: 'the peer did not answer in time',
  ERR_PEER_UNREACHABLE: 'the peer could not be reached',
  ERR_STREAM_CLOSED: 'the connection to the peer closed mid-exchange',
  ERR_ABORTED: 'the operation was cancelled',
  ERR_INTERNAL: 'the peer failed while handling the request',
  ERR_OVERLOADED: 'the node has too much in flight; retry later or elsewhere',
  ERR_PIPELINE: 'a later node of a replication pipeline failed',
  ERR_FORBIDDEN: 'the peer is not allowed to do that',
  ERR_UNDER_REPLICATED: 'not enough storage nodes to place every replica',
  ERR_RAFT_STATE_MISSING: 'a master that has run before lost its Raft state; it must not vote',
  ERR_UNAUTHENTICATED: 'no valid login: log in with dfs login',
  ERR_TOKEN_EXPIRED: 'the login token or chunk ticket expired: log in again',
  ERR_QUOTA: "the user's byte or file quota would be exceeded",
  ERR_UNAVAILABLE: 'the peer cannot serve this yet (it is still starting); retry shortly or elsewhere',
  ERR_FILE_CHANGED: 'the file was replaced or removed while it was being read; read it again',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class DfsError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DfsError';
    this.code = code;
  }
}

export function isDfsError(err: unknown, code?: ErrorCode): err is DfsError {
  return err instanceof DfsError && (code === undefined || err.code === code);
}

/**
 * Maps a Node.js system error from a disk operation to a DfsError, so that callers see
 * ERR_NO_SPACE for a full disk (ENOSPC, EDQUOT) and ERR_IO for everything else.
 */
export function fromSystemError(err: unknown, what: string): DfsError {
  if (err instanceof DfsError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  // LevelDB reports a full disk as an IO error whose message carries the OS text.
  if (code === 'ENOSPC' || code === 'EDQUOT' || /no space left on device/i.test(String((err as Error)?.message))) {
    return new DfsError('ERR_NO_SPACE', `${what}: no space left on device`, { cause: err });
  }
  const detail = err instanceof Error ? err.message : String(err);
  return new DfsError('ERR_IO', `${what}: ${detail}`, { cause: err });
}
