import { DfsError } from '../errors/index.ts';

/** The error codes of authentication and authorisation (all in the closed list of src/errors). */
export const AUTH_ERROR_CODES = ['ERR_UNAUTHENTICATED', 'ERR_FORBIDDEN', 'ERR_TOKEN_EXPIRED', 'ERR_QUOTA'] as const;
export type AuthErrorCode = (typeof AUTH_ERROR_CODES)[number];

/** The error to throw for an auth refusal. */
export function authError(code: AuthErrorCode, message: string): DfsError {
  return new DfsError(code, message);
}

/** True for a DfsError carrying one of the auth codes (or exactly `code`). */
export function isAuthError(err: unknown, code?: AuthErrorCode): err is DfsError & { code: AuthErrorCode } {
  if (!(err instanceof DfsError)) return false;
  const c: string = err.code;
  return code === undefined ? (AUTH_ERROR_CODES as readonly string[]).includes(c) : c === code;
}
