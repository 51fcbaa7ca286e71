import { LEVELS, PRINCIPAL_PATTERN, rolesSchema, storedPasswordSchema, userNameSchema } from '../auth/index.ts';
import { DfsError, type ErrorCode, isDfsError } from '../errors/index.ts';
import { schema, type Schema } from '../net/schema.ts';
import { type MetaEnvelope, NODE_STATES } from './commands.ts';
import { type Manifest, validateManifest } from './manifest.ts';

/**
 * The one schema of a Raft log entry (`{clientId, seq, cmd}`), every command included. A log
 * entry is read as untrusted input: a faulty or hostile master may have proposed anything, and
 * every master must refuse it the same way (a refusal, never a throw). Refusals carry the code
 * apply would give for the same fault: ERR_INVALID_PATH for a path, ERR_INVALID_MANIFEST for a
 * manifest, ERR_INVALID_ARGUMENT for any other command field, ERR_PROTOCOL for the envelope.
 *
 * The limits here and those of SnapshotRecordChecker are the same constants, so whatever applies
 * also snapshots and restores.
 */

/** Longest id of an owner or a node. */
export const MAX_ID_CHARS = 256;
/** Longest client session id (the protocol takes 128; this is what a log entry or snapshot may hold). */
export const MAX_CLIENT_ID_CHARS = 1024;
export const MAX_NODE_ADDRS = 32;
export const MAX_NODE_NAME = 64;
export const MAX_ADDR_CHARS = 1024;
/** A path as the log holds it; normalizePath bounds it further (PATH_LIMITS). */
const MAX_PATH_CHARS = 8192;
/** The cluster key: a libp2p Ed25519 private key protobuf (68 bytes) in base64; room to spare. */
export const MAX_AUTH_KEY_CHARS = 512;

/** Rewrites the schema's ERR_PROTOCOL as `code` (other codes pass through). */
function coded<T>(code: ErrorCode, inner: Schema<T>): Schema<T> {
  const parseAt = (input: unknown, path: string): T => {
    try {
      return inner.parseAt(input, path);
    } catch (err) {
      if (isDfsError(err, 'ERR_PROTOCOL')) throw new DfsError(code, err.message);
      throw err;
    }
  };
  return { expected: inner.expected, parseAt, parse: (input) => parseAt(input, '') };
}

/** A manifest, checked by validateManifest (ERR_INVALID_MANIFEST) and returned canonical. */
const manifestSchema: Schema<Manifest> = {
  expected: 'manifest',
  parseAt: (input) => validateManifest(input),
  parse: (input) => validateManifest(input),
};

const path = coded('ERR_INVALID_PATH', schema.string({ minLength: 1, maxLength: MAX_PATH_CHARS }));
const id = schema.string({ minLength: 1, maxLength: MAX_ID_CHARS });
const nowMs = schema.integer({ min: 0 });
const count = schema.integer({ min: 0 });

export const metaCommandSchema = coded(
  'ERR_INVALID_ARGUMENT',
  schema.taggedUnion('op', {
    mkdir: schema.object({ path, parents: schema.boolean(), owner: id, nowMs }),
    commitFile: schema.object({ path, manifest: manifestSchema, owner: id, nowMs, parents: schema.boolean(), ifAbsent: schema.boolean() }),
    rm: schema.object({ path, recursive: schema.boolean() }),
    mv: schema.object({ from: path, to: path, nowMs }),
    registerNode: schema.object({
      nodeId: id,
      name: schema.optional(schema.string({ minLength: 1, maxLength: MAX_NODE_NAME })),
      addrs: schema.array(schema.string({ minLength: 1, maxLength: MAX_ADDR_CHARS }), { maxLength: MAX_NODE_ADDRS }),
      capacityBytes: count,
      nowMs,
      admit: schema.optional(schema.boolean()),
    }),
    setNodeState: schema.object({ nodeId: id, state: schema.oneOf(NODE_STATES as unknown as ['pending', 'alive', 'suspect', 'dead', 'draining']), nowMs }),
    removeNode: schema.object({ nodeId: id }),
    noop: schema.object({}),
    setAuthKey: schema.object({ key: schema.string({ minLength: 1, maxLength: MAX_AUTH_KEY_CHARS, pattern: /^[A-Za-z0-9+/]+={0,2}$/ }) }),
    addUser: schema.object({ name: userNameSchema, password: storedPasswordSchema, roles: rolesSchema, nowMs }),
    removeUser: schema.object({ name: userNameSchema, heir: schema.optional(userNameSchema) }),
    setPassword: schema.object({ name: userNameSchema, password: storedPasswordSchema }),
    setUserDisabled: schema.object({ name: userNameSchema, disabled: schema.boolean() }),
    setUserRoles: schema.object({ name: userNameSchema, roles: rolesSchema }),
    revokeTokens: schema.object({ name: userNameSchema }),
    grant: schema.object({ path, principal: schema.string({ pattern: PRINCIPAL_PATTERN }), level: schema.oneOf(LEVELS) }),
    revoke: schema.object({ path, principal: schema.string({ pattern: PRINCIPAL_PATTERN }), level: schema.optional(schema.oneOf(LEVELS)) }),
    setQuota: schema.object({ user: userNameSchema, maxBytes: schema.optional(count), maxFiles: schema.optional(count) }),
  }),
);

export const metaEnvelopeSchema = schema.object({
  clientId: schema.string({ maxLength: MAX_CLIENT_ID_CHARS }),
  seq: schema.integer(),
  cmd: metaCommandSchema,
});

/** A log entry's envelope, checked whole; throws a DfsError (see above for the codes). */
export function parseEnvelope(value: unknown): MetaEnvelope {
  return metaEnvelopeSchema.parse(value) as MetaEnvelope;
}
