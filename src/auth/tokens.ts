import type { PrivateKey, PublicKey } from '@libp2p/interface';
import { DfsError } from '../errors/index.ts';
import { schema } from '../net/schema.ts';
import type { Infer } from '../net/schema.ts';
import { authError } from './errors.ts';
import { canonicalRoles, peerIdSchema, rolesSchema, userNameSchema } from './identity.ts';
import type { Identity, Role } from './identity.ts';
import { openEnvelope, signEnvelope } from './signing.ts';

/**
 * Login tokens. A master that checked a user's password hands out a token signed with the cluster
 * key (Ed25519; the key pair lives in the replicated state, so every master signs and checks with
 * the same key, and only masters hold the private half). Every later request carries the token;
 * the master derives the caller's identity from it, never from a name the client sends.
 *
 * Encoding (see signing.ts): `base64url(JSON claims) + '.' + base64url(signature)`, the signature
 * over `dfs/token/v1.<base64url claims>`. Claims:
 *
 *   user   the user name
 *   roles  the user's roles at login
 *   gen    the user's token generation at login. Bumping the generation in the state revokes every
 *          token issued before: a token is accepted only while gen >= the user's current one (>=,
 *          not ==, so a master whose state lags the one that signed still accepts it). Bump it on
 *          a password change, a role change (a token's roles are those at login), "log out
 *          everywhere", and disabling a user.
 *   iat    issued at, ms since the epoch (the master's clock)
 *   exp    expires at, ms since the epoch (iat + DEFAULT_TOKEN_TTL_MS unless asked otherwise)
 *   peer   optional: the libp2p peer id the token is bound to; then only that peer may present it
 *
 * A token is a bearer secret for its lifetime: like a password, never log one.
 */
export const TOKEN_CONTEXT = 'dfs/token/v1';
/** Longest token accepted: claims are small, so anything longer is refused unread. */
export const MAX_TOKEN_CHARS = 2048;
export const DEFAULT_TOKEN_TTL_MS = 12 * 60 * 60 * 1000;
export const MAX_TOKEN_TTL_MS = 30 * 24 * 60 * 60 * 1000;
/** How far in the future a token's iat may be (masters' clocks differ a little). */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 60_000;

const msSchema = schema.integer({ min: 0 });

export const tokenClaimsSchema = schema.object({
  user: userNameSchema,
  roles: rolesSchema,
  gen: schema.integer({ min: 0 }),
  iat: msSchema,
  exp: msSchema,
  peer: schema.optional(peerIdSchema),
});
export type TokenClaims = Infer<typeof tokenClaimsSchema>;

export interface NewTokenClaims {
  readonly user: string;
  readonly roles: readonly Role[];
  readonly gen: number;
  /** Clock.now() of the signing master. */
  readonly now: number;
  readonly ttlMs?: number;
  readonly peer?: string;
}

/** The claims of a token issued now. */
export function newTokenClaims({ user, roles, gen, now, ttlMs = DEFAULT_TOKEN_TTL_MS, peer }: NewTokenClaims): TokenClaims {
  const claims: TokenClaims = { user, roles: canonicalRoles(roles), gen, iat: now, exp: now + ttlMs };
  return peer === undefined ? claims : { ...claims, peer };
}

/** Signs a login token. Throws ERR_INVALID_ARGUMENT for claims that the verifier would refuse to read. */
export async function signToken(privateKey: PrivateKey, claims: TokenClaims): Promise<string> {
  let checked: TokenClaims;
  try {
    checked = tokenClaimsSchema.parse(claims);
  } catch (err) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `token claims: ${(err as Error).message}`);
  }
  if (checked.exp <= checked.iat || checked.exp - checked.iat > MAX_TOKEN_TTL_MS) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `a token must expire after it is issued and within ${MAX_TOKEN_TTL_MS} ms, got iat ${checked.iat} exp ${checked.exp}`);
  }
  return signEnvelope(privateKey, TOKEN_CONTEXT, { ...checked, roles: canonicalRoles(checked.roles) });
}

export interface VerifyTokenOptions {
  /** Clock.now() of the verifying master. */
  readonly now: number;
  /** The user's current token generation from the state; undefined when no such user exists. */
  readonly currentGen: (user: string) => number | undefined;
  /** Whether the user is disabled in the state. */
  readonly disabled: (user: string) => boolean;
  /** The Noise-authenticated peer id of the caller: required to accept a peer-bound token. */
  readonly peerId?: string;
  readonly maxClockSkewMs?: number;
}

export type TokenRefusalReason = 'missing' | 'malformed' | 'signature' | 'expired' | 'not-yet-valid' | 'unknown-user' | 'disabled' | 'revoked' | 'wrong-peer';

export type TokenResult =
  | { readonly ok: true; readonly identity: Identity; readonly claims: TokenClaims }
  | { readonly ok: false; readonly code: 'ERR_UNAUTHENTICATED' | 'ERR_TOKEN_EXPIRED'; readonly reason: TokenRefusalReason; readonly message: string };

function refuse(reason: TokenRefusalReason, message: string): TokenResult {
  return { ok: false, code: reason === 'expired' ? 'ERR_TOKEN_EXPIRED' : 'ERR_UNAUTHENTICATED', reason, message };
}

const LOGIN = 'run `dfs login` again';

/**
 * Checks a login token and returns the caller's identity, or why it is refused (with what to do).
 * Never throws. Synchronous: a master checks one per request.
 */
export function verifyToken(token: unknown, publicKey: PublicKey, options: VerifyTokenOptions): TokenResult {
  if (token === undefined || token === null || token === '') return refuse('missing', 'no login token: run `dfs login` first');
  const opened = openEnvelope(token, publicKey, TOKEN_CONTEXT, MAX_TOKEN_CHARS);
  if (!opened.ok) {
    return opened.why === 'malformed'
      ? refuse('malformed', `the login token is malformed: ${LOGIN}`)
      : refuse('signature', `the login token is not signed by this cluster's key (altered, or issued by another cluster): ${LOGIN}`);
  }
  let claims: TokenClaims;
  try {
    claims = tokenClaimsSchema.parse(opened.claims);
  } catch {
    return refuse('malformed', `the login token's claims are malformed: ${LOGIN}`);
  }
  const { now } = options;
  if (now >= claims.exp) return refuse('expired', `the login token of ${claims.user} expired at ${new Date(claims.exp).toISOString()}: ${LOGIN}`);
  if (claims.iat > now + (options.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS)) {
    return refuse('not-yet-valid', `the login token of ${claims.user} is issued in the future (${new Date(claims.iat).toISOString()}); check the clocks, then ${LOGIN}`);
  }
  const current = options.currentGen(claims.user);
  if (current === undefined) return refuse('unknown-user', `user ${claims.user} no longer exists: ask an admin (\`dfs user add\`)`);
  if (options.disabled(claims.user)) return refuse('disabled', `user ${claims.user} is disabled: ask an admin to enable it`);
  if (claims.gen < current) return refuse('revoked', `the login token of ${claims.user} was revoked (password, roles or sessions changed): ${LOGIN}`);
  if (claims.peer !== undefined && claims.peer !== options.peerId) {
    return refuse('wrong-peer', `the login token of ${claims.user} is bound to peer ${claims.peer}, not to ${options.peerId ?? 'this caller'}: ${LOGIN} from this machine`);
  }
  const identity: Identity =
    claims.peer === undefined ? { user: claims.user, roles: canonicalRoles(claims.roles), gen: claims.gen } : { user: claims.user, roles: canonicalRoles(claims.roles), gen: claims.gen, peer: claims.peer };
  return { ok: true, identity, claims };
}

/** The error to throw for a refused token. */
export function tokenError(result: Extract<TokenResult, { ok: false }>): DfsError {
  return authError(result.code, result.message);
}
