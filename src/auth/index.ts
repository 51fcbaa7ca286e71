/**
 * Users, roles, per-path grants, login tokens, chunk tickets, login limits and quotas: the pure,
 * dependency-injected core of authentication and authorisation. Nothing here does I/O; masters and
 * storage nodes wire it in.
 */
export { AUTH_ERROR_CODES, authError, isAuthError } from './errors.ts';
export type { AuthErrorCode } from './errors.ts';
export { canonicalRoles, isRole, isUserName, PEER_ID_PATTERN, peerIdSchema, roleSchema, ROLES, rolesSchema, USER_NAME_PATTERN, userNameSchema } from './identity.ts';
export type { Identity, Role } from './identity.ts';
export {
  ARGON2_LIMITS,
  argon2Backend,
  DEFAULT_ARGON2_PARAMS,
  formatStoredPassword,
  hashPassword,
  MAX_PASSWORD_BYTES,
  needsRehash,
  parseStoredPassword,
  SALT_BYTES,
  storedPasswordSchema,
  verifyPassword,
} from './passwords.ts';
export type { Argon2Backend, Argon2Params, HashPasswordOptions, StoredPassword, VerifyPasswordOptions } from './passwords.ts';
export {
  DEFAULT_MAX_CLOCK_SKEW_MS,
  DEFAULT_TOKEN_TTL_MS,
  MAX_TOKEN_CHARS,
  MAX_TOKEN_TTL_MS,
  newTokenClaims,
  signToken,
  TOKEN_CONTEXT,
  tokenClaimsSchema,
  tokenError,
  verifyToken,
} from './tokens.ts';
export type { NewTokenClaims, TokenClaims, TokenRefusalReason, TokenResult, VerifyTokenOptions } from './tokens.ts';
export { ACTIONS, authorize, authorizeOperation, checksFor, GrantTable, grantSchema, LEVELS, levelFor, parseGrant, policyView, PRINCIPAL_PATTERN } from './policy.ts';
export type { Action, Check, Decision, Grant, Level, Operation, PolicyView } from './policy.ts';
export {
  DEFAULT_TICKET_TTL_MS,
  MAX_TICKET_CHARS,
  MAX_TICKET_IDS,
  MAX_TICKET_TTL_MS,
  newTicketClaims,
  signTicket,
  TICKET_CONTEXT,
  TICKET_OPS,
  ticketClaimsSchema,
  ticketError,
  TicketVerifier,
  verifyTicket,
} from './tickets.ts';
export type { NewTicketClaims, TicketClaims, TicketOp, TicketRefusalReason, TicketRequest, TicketResult, TicketVerifierOptions, VerifyTicketOptions } from './tickets.ts';
export { LoginLimiter } from './login-limiter.ts';
export type { LoginCheck, LoginLimiterOptions } from './login-limiter.ts';
export { applyUsage, formatBytes, putDelta, quotaError, quotaSchema, usageSchema, wouldExceed, ZERO_USAGE } from './quota.ts';
export type { Quota, QuotaExcess, Usage } from './quota.ts';
