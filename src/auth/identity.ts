import { schema } from '../net/schema.ts';

/**
 * Who is asking: the identity a master derives from a verified login token (never from a name the
 * client sends). `roles` are the built-in roles; see policy.ts for what each allows.
 */
export const ROLES = ['admin', 'writer', 'reader'] as const;
export type Role = (typeof ROLES)[number];

export interface Identity {
  /** The user name (USER_NAME_PATTERN). */
  readonly user: string;
  readonly roles: readonly Role[];
  /** The token generation the identity was proven with (see tokens.ts). */
  readonly gen: number;
  /** The libp2p peer id the token is bound to, when it is. */
  readonly peer?: string;
}

/**
 * A user name: 1 to 64 characters, letters, digits, '_', '.', '-', not starting with '.' or '-'
 * (so it can never look like an option or a role principal, which starts with '@').
 */
export const USER_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

export function isUserName(value: unknown): value is string {
  return typeof value === 'string' && USER_NAME_PATTERN.test(value);
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

export const userNameSchema = schema.string({ pattern: USER_NAME_PATTERN });
export const roleSchema = schema.oneOf(ROLES);
export const rolesSchema = schema.array(roleSchema, { maxLength: ROLES.length });

/** A libp2p peer id as text (base58btc "12D3Koo..." / "Qm...", or a base32 CID "b..."). */
export const PEER_ID_PATTERN = /^[A-Za-z0-9]{16,128}$/;
export const peerIdSchema = schema.string({ pattern: PEER_ID_PATTERN });

/** Roles without duplicates, in ROLES order (so equal role sets encode equally). */
export function canonicalRoles(roles: readonly Role[]): Role[] {
  return ROLES.filter((r) => roles.includes(r));
}
