import { generateKeyPairFromSeed, privateKeyFromProtobuf, privateKeyToProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey, PublicKey } from '@libp2p/interface';
import {
  authorizeOperation,
  hashPassword,
  type HashPasswordOptions,
  type Identity,
  LoginLimiter,
  type LoginLimiterOptions,
  newTicketClaims,
  newTokenClaims,
  type Operation,
  type PolicyView,
  signTicket,
  signToken,
  type TicketOp,
  verifyPassword,
  type VerifyPasswordOptions,
  verifyToken,
} from '../auth/index.ts';
import type { Clock, Rng } from '../env/index.ts';
import { DfsError, type ErrorCode } from '../errors/index.ts';
import type { Logger } from '../log/index.ts';
import type { LoginResult, MetaCommand, MetaState } from '../meta/index.ts';
import type { LeaderContext, LeaderTask } from './leader-tasks.ts';
import { PeerRateLimit } from './rate-limit.ts';


/** Refusal lines a peer may cause, a second and in a burst; the rest are counted, not written. */
const REFUSAL_LINES_PER_SECOND = 2;
const REFUSAL_LINES_BURST = 20;
/** Peers whose unwritten refusals are counted at once. */
const MAX_UNLOGGED_PEERS = 10_000;
/**
 * Who a metadata request comes from, and what they may do: identity resolution, authorisation
 * (src/auth/policy.ts is the one policy), logins, and the signatures of tokens and chunk tickets
 * with the cluster key held in the replicated state.
 *
 * A request's identity, in this order (never a name the client fills in):
 *   1. a master's peer id (Noise-authenticated): internal, may do everything (user `root`);
 *   2. a peer in --admin-peers (the cluster's admin key): user `admin`, role admin;
 *   3. a valid login token: its user with the user's CURRENT roles from the state;
 *   4. otherwise anonymous: `status`, `login`, node registration and a node's own heartbeat and
 *      report only (MetaService checks those by peer id); anything else ERR_UNAUTHENTICATED.
 *
 * Every refusal (ERR_UNAUTHENTICATED, ERR_FORBIDDEN, ERR_QUOTA) and every login, user, role,
 * grant and quota change is a structured `component: audit` log line (never a password or a
 * token).
 */
export type CallerKind = 'master' | 'admin-key' | 'token' | 'anonymous';

export interface Caller {
  readonly kind: CallerKind;
  /** The Noise-authenticated peer id. */
  readonly peerId: string;
  /** Set for master, admin-key and token callers. */
  readonly identity?: Identity;
  /** A token caller's expiry. */
  readonly expiresAtMs?: number;
  /** An anonymous caller that presented a token: why it was refused. */
  readonly refused?: { readonly code: ErrorCode; readonly message: string };
}

export interface AccessOptions {
  readonly state: () => MetaState;
  readonly masterAddrs: ReadonlyMap<string, string>;
  readonly adminPeers: ReadonlySet<string>;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Argon2 parameters for new password hashes (tests pass cheap ones). */
  readonly passwords?: HashPasswordOptions;
  readonly verifyPasswords?: VerifyPasswordOptions;
  readonly loginLimits?: Omit<LoginLimiterOptions, 'clock'>;
  /** Password checks running at once at most; more logins get ERR_OVERLOADED. Default 2 (of 8 pool threads). */
  readonly maxLoginsInFlight?: number;
  /** Lifetime of chunk tickets. Default DEFAULT_TICKET_TTL_MS (60 s). */
  readonly ticketTtlMs?: number;
}

/** The cluster key pair, and the public half as nodes receive it (base64 protobuf). */
export interface ClusterKeys {
  readonly privateKey: PrivateKey;
  readonly publicKey: PublicKey;
  readonly publicText: string;
}

const MASTER_IDENTITY: Identity = Object.freeze({ user: 'root', roles: Object.freeze(['admin'] as const), gen: 0 });
const ADMIN_KEY_IDENTITY: Identity = Object.freeze({ user: 'admin', roles: Object.freeze(['admin'] as const), gen: 0 });

const LOG_IN = 'log in with `dfs login`';

export class Access {
  readonly #o: AccessOptions;
  readonly #audit: Logger;
  readonly #limiter: LoginLimiter;
  #loginsInFlight = 0;
  #keyText: string | undefined;
  #keys: ClusterKeys | undefined;

  constructor(options: AccessOptions) {
    this.#o = options;
    this.#audit = options.logger.child({ component: 'audit' });
    this.#limiter = new LoginLimiter({ clock: options.clock, ...options.loginLimits });
    this.#refusalLines = new PeerRateLimit({ clock: options.clock, perSecond: REFUSAL_LINES_PER_SECOND, burst: REFUSAL_LINES_BURST });
  }

  /** Log lines about one peer's refused requests: a peer that floods us must not flood the log. */
  readonly #refusalLines: PeerRateLimit;
  /** Refusals of a peer not logged since its last line (bounded: the oldest peers go first). */
  readonly #unlogged = new Map<string, number>();

  /**
   * Whether a line about a refusal of `peerId`'s may be written now; when not, it is counted and
   * the next line that is written says how many were left out (`unlogged`).
   */
  mayLogRefusal(peerId: string): { readonly ok: boolean; readonly unlogged: number } {
    if (this.#refusalLines.take(peerId)) {
      const unlogged = this.#unlogged.get(peerId) ?? 0;
      this.#unlogged.delete(peerId);
      return { ok: true, unlogged };
    }
    this.#unlogged.set(peerId, (this.#unlogged.get(peerId) ?? 0) + 1);
    if (this.#unlogged.size > MAX_UNLOGGED_PEERS) this.#unlogged.delete(this.#unlogged.keys().next().value!);
    return { ok: false, unlogged: 0 };
  }

  /** The cluster key pair from the applied state, once the first leader has set it. */
  keys(): ClusterKeys | undefined {
    const text = this.#o.state().authKey;
    if (text === undefined) return undefined;
    if (text !== this.#keyText || this.#keys === undefined) {
      const privateKey = privateKeyFromProtobuf(Buffer.from(text, 'base64'));
      this.#keys = { privateKey, publicKey: privateKey.publicKey, publicText: Buffer.from(publicKeyToProtobuf(privateKey.publicKey)).toString('base64') };
      this.#keyText = text;
    }
    return this.#keys;
  }

  /** The keys, or ERR_UNAVAILABLE: a leader signs nothing before the cluster key has applied. */
  requireKeys(): ClusterKeys {
    const keys = this.keys();
    if (!keys) throw new DfsError('ERR_UNAVAILABLE', 'this master has not applied the cluster key yet (a new cluster is starting): retry in a moment');
    return keys;
  }

  /** The identity of a request from `peerId` carrying `token` (see the class comment). */
  resolve(token: string | undefined, peerId: string): Caller {
    if (this.#o.masterAddrs.has(peerId)) return { kind: 'master', peerId, identity: MASTER_IDENTITY };
    if (this.#o.adminPeers.has(peerId)) return { kind: 'admin-key', peerId, identity: ADMIN_KEY_IDENTITY };
    if (token === undefined) return { kind: 'anonymous', peerId };
    const keys = this.keys();
    if (!keys) return { kind: 'anonymous', peerId, refused: { code: 'ERR_UNAVAILABLE', message: 'this master has not applied the cluster key yet: retry in a moment' } };
    const state = this.#o.state();
    const result = verifyToken(token, keys.publicKey, {
      now: this.#o.clock.now(),
      currentGen: (user) => state.user(user)?.gen,
      disabled: (user) => state.user(user)?.disabled === true,
      peerId,
    });
    if (!result.ok) return { kind: 'anonymous', peerId, refused: { code: result.code, message: result.message } };
    const roles = state.user(result.identity.user)?.roles ?? [];
    return { kind: 'token', peerId, identity: { ...result.identity, roles }, expiresAtMs: result.claims.exp };
  }

  /** The caller's identity, or the refusal (the token's own, or ERR_UNAUTHENTICATED). */
  identify(caller: Caller, op: string, path?: string): Identity {
    if (caller.identity) return caller.identity;
    const code = caller.refused?.code ?? 'ERR_UNAUTHENTICATED';
    const message = caller.refused?.message ?? `${op} needs a login: ${LOG_IN}`;
    throw this.refuse(code, message, caller, op, path);
  }

  /** Checks `operation` with the policy; ERR_FORBIDDEN (audited) when refused. Returns the identity. */
  check(caller: Caller, operation: Operation, op: string): Identity {
    const path = 'path' in operation ? operation.path : 'from' in operation ? operation.from : undefined;
    const identity = this.identify(caller, op, path);
    if (caller.kind === 'master') return identity;
    const decision = authorizeOperation(identity, operation, this.policyView());
    if (!decision.allowed) throw this.refuse('ERR_FORBIDDEN', decision.reason, caller, op, path);
    return identity;
  }

  policyView(): PolicyView {
    const state = this.#o.state();
    return { grantsAt: (p) => state.grantsAt(p), ownerOf: (p) => state.ownerOf(p), grantedPathsBelow: (p) => state.grantedPathsBelow(p) };
  }

  /** Logs a refusal on the audit log and returns the error to throw. */
  refuse(code: ErrorCode, message: string, caller: Caller, op: string, path?: string): DfsError {
    const line = this.mayLogRefusal(caller.peerId);
    if (line.ok) {
      const fields = { event: 'refused', code, user: caller.identity?.user ?? null, peer: caller.peerId, via: caller.kind, op, ...(path !== undefined ? { path } : {}), reason: message };
      this.#audit.warn(line.unlogged > 0 ? { ...fields, unlogged: line.unlogged } : fields, 'refused');
    }
    return new DfsError(code, message);
  }

  /** One audit line (user, role, grant, quota changes...). Never pass a password or a token. */
  audit(event: string, fields: Record<string, unknown>): void {
    this.#audit.info({ event, ...fields }, event);
  }

  /** A stored (hashed) password for `password`: what goes into the Raft log instead of it. */
  hashPassword(password: string): Promise<string> {
    return hashPassword(password, this.#o.passwords);
  }

  /**
   * Whether `password` is `user`'s (same work for an unknown user), for a caller that is not
   * logging in (a user changing their own password). Failures count with the login limiter's, per
   * user and per peer: else a stolen token would be unlimited guessing of the account's password.
   * While the limiter holds `user` or the caller's peer off: ERR_FORBIDDEN (audited), nothing checked.
   */
  async checkPassword(user: string, password: string, caller: Caller): Promise<boolean> {
    const limit = this.#limiter.check(user, caller.peerId);
    if (!limit.allowed) throw this.refuse('ERR_FORBIDDEN', limit.message, caller, 'checkPassword');
    const good = await this.#limitedPasswordCheck(() => verifyPassword(password, this.#o.state().user(user)?.password, this.#o.verifyPasswords));
    if (!good) this.#limiter.recordFailure(user, caller.peerId);
    return good;
  }

  /** A failed login's audit line, within the peer's allowance of refusal lines (mayLogRefusal). */
  #auditLoginFailure(peerId: string, fields: Record<string, unknown>, message: string): void {
    const line = this.mayLogRefusal(peerId);
    if (line.ok) this.#audit.warn({ event: 'login', ok: false, ...fields, peer: peerId, ...(line.unlogged > 0 ? { unlogged: line.unlogged } : {}) }, message);
  }

  /** Checks a password and signs a token; failures are rate-limited per user and per peer. */
  async login(user: string, password: string, peerId: string, ttlMs: number | undefined): Promise<LoginResult> {
    const keys = this.requireKeys();
    const caller: Caller = { kind: 'anonymous', peerId };
    const limit = this.#limiter.check(user, peerId);
    if (!limit.allowed) {
      this.#auditLoginFailure(peerId, { user, reason: 'rate-limited', retryAfterMs: limit.retryAfterMs }, 'login refused');
      throw new DfsError('ERR_UNAUTHENTICATED', limit.message);
    }
    const stored = this.#o.state().user(user)?.password;
    const good = await this.#limitedPasswordCheck(() => verifyPassword(password, stored, this.#o.verifyPasswords));
    // Read again after the wait: the user may have been removed, disabled or changed meanwhile.
    const record = this.#o.state().user(user);
    if (!good || record === undefined || record.password !== stored) {
      this.#limiter.recordFailure(user, peerId);
      this.#auditLoginFailure(peerId, { user, reason: 'bad credentials' }, 'login failed');
      throw new DfsError('ERR_UNAUTHENTICATED', 'wrong user name or password: check them and run `dfs login` again');
    }
    if (record.disabled) {
      throw this.refuse('ERR_UNAUTHENTICATED', `user ${user} is disabled: ask an admin to enable it (dfs user enable)`, caller, 'login');
    }
    this.#limiter.recordSuccess(user, peerId);
    const claims = newTokenClaims({ user, roles: record.roles, gen: record.gen, now: this.#o.clock.now(), ...(ttlMs !== undefined ? { ttlMs } : {}) });
    const token = await signToken(keys.privateKey, claims);
    this.#audit.info({ event: 'login', ok: true, user, peer: peerId, roles: claims.roles, expiresAtMs: claims.exp }, 'login');
    return { token, user, roles: [...claims.roles], expiresAtMs: claims.exp };
  }

  async #limitedPasswordCheck(check: () => Promise<boolean>): Promise<boolean> {
    if (this.#loginsInFlight >= (this.#o.maxLoginsInFlight ?? 2)) throw new DfsError('ERR_OVERLOADED', 'too many password checks under way on this master: retry in a moment');
    this.#loginsInFlight++;
    try {
      return await check();
    } finally {
      this.#loginsInFlight--;
    }
  }

  /** A chunk ticket: `op` on `ids` for `bearer` (a peer id), under `fence` when given. */
  async ticket(op: TicketOp, ids: readonly string[], bearer: string, fence?: number, user?: string): Promise<string> {
    const { privateKey } = this.requireKeys();
    const claims = newTicketClaims({
      op,
      ids,
      bearer,
      now: this.#o.clock.now(),
      ...(this.#o.ticketTtlMs !== undefined ? { ttlMs: this.#o.ticketTtlMs } : {}),
      ...(fence !== undefined ? { fence } : {}),
      ...(user !== undefined ? { user } : {}),
    });
    return signTicket(privateKey, claims);
  }
}

/** The command that sets a new cluster key, drawn from `rng` (the simulator's is seeded). */
export async function newClusterKeyCommand(rng: Rng): Promise<MetaCommand> {
  const seed = new Uint8Array(32);
  // Each byte from a fresh rng draw: in production systemRng is node:crypto's randomBytes.
  for (let i = 0; i < seed.length; i++) seed[i] = Math.floor(rng() * 256) & 0xff;
  const key = await generateKeyPairFromSeed('Ed25519', seed);
  return { op: 'setAuthKey', key: Buffer.from(privateKeyToProtobuf(key)).toString('base64') };
}

export interface ClusterKeyTaskOptions {
  readonly state: () => MetaState;
  readonly rng: Rng;
  readonly propose: (cmd: MetaCommand) => Promise<unknown>;
  readonly logger: Logger;
}

/**
 * The leader task that gives a new cluster its signing key: once leadership is confirmed (so the
 * state has everything committed before), a leader that finds no key proposes one. Two leaders
 * racing both propose; the state keeps the first (setAuthKey is refused once a key is set).
 */
export class ClusterKeyTask implements LeaderTask {
  readonly name = 'cluster-key';
  readonly #o: ClusterKeyTaskOptions;

  constructor(options: ClusterKeyTaskOptions) {
    this.#o = options;
  }

  async run(ctx: LeaderContext): Promise<void> {
    await ctx.confirm();
    if (this.#o.state().authKey === undefined && ctx.leading()) {
      await this.#o.propose(await newClusterKeyCommand(this.#o.rng));
      if (this.#o.state().authKey !== undefined) this.#o.logger.info({ component: 'audit', event: 'cluster-key' }, 'the cluster signing key is set');
    }
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
  }
}
