import { DfsError, ERROR_CODES } from '../errors/index.ts';
import type { ErrorCode } from '../errors/index.ts';

/**
 * The error codes of authentication and authorisation. Only ERR_FORBIDDEN is in the closed list of
 * `src/errors` so far; the other three are to be added there (with these descriptions):
 *
 * - ERR_UNAUTHENTICATED: 'no valid login: log in with `dfs login`'
 * - ERR_TOKEN_EXPIRED:   'the login token or chunk ticket expired: log in again (or ask for a new ticket)'
 * - ERR_QUOTA:           'the user's byte or file quota would be exceeded'
 *
 * Until then `authError` returns a DfsError for a code the list has and an AuthError (same shape:
 * `code`, `message`) for one it lacks, so callers can already branch on `err.code`. Once the codes
 * are added, `authError` returns DfsErrors for all four without any change here.
 */
export const AUTH_ERROR_CODES = ['ERR_UNAUTHENTICATED', 'ERR_FORBIDDEN', 'ERR_TOKEN_EXPIRED', 'ERR_QUOTA'] as const;
export type AuthErrorCode = (typeof AUTH_ERROR_CODES)[number];

export class AuthError extends Error {
  readonly code: AuthErrorCode;

  constructor(code: AuthErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AuthError';
    this.code = code;
  }
}

function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

/** The error to throw for an auth refusal: a DfsError when `code` is a DfsError code, else an AuthError. */
export function authError(code: AuthErrorCode, message: string): DfsError | AuthError {
  return isErrorCode(code) ? new DfsError(code, message) : new AuthError(code, message);
}

/** True for a DfsError or AuthError carrying one of the auth codes (or exactly `code`). */
export function isAuthError(err: unknown, code?: AuthErrorCode): err is { code: AuthErrorCode; message: string } {
  if (!(err instanceof DfsError || err instanceof AuthError)) return false;
  const c: string = err.code;
  return code === undefined ? (AUTH_ERROR_CODES as readonly string[]).includes(c) : c === code;
}
