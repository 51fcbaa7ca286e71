import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { DfsError, type ErrorCode, isDfsError } from '../errors/index.ts';
import type { Level, Role } from '../auth/index.ts';
import {
  type AclView,
  type Entry,
  type ListedEntry,
  type MasterStatus,
  META_MAX_FRAME_BYTES,
  META_PROTOCOL,
  type MetaRequest,
  type MetaResponse,
  metaResponseSchema,
  type StoredAck,
  type UserView,
  type WhoAmI,
  type LoginResult,
  type WriteCommand,
} from './index.ts';
import { type DfsPeer, RpcChannelPool } from '../net/index.ts';

export interface MetaClientOptions {
  readonly peer: DfsPeer;
  /** Every master's multiaddr, ending in /p2p/<peer id>. */
  readonly masters: readonly string[];
  /** Bound on one request including every retry and failover. Default 15 s. */
  readonly timeoutMs?: number;
  /** Bound on one attempt at one master. Default 3 s. */
  readonly attemptTimeoutMs?: number;
  /**
   * The login token sent with every request (or a function asked before each request, so a
   * long-lived client picks up a new login). The masters take the caller's identity from it.
   */
  readonly token?: string | (() => string | undefined);
  /** Ignored: a request's user comes from its token, never from a name the client sends. */
  readonly user?: string;
}

/** One master's answer to a status request, or why there was none. */
export interface MasterStatusEntry {
  readonly addr: string;
  readonly status?: MasterStatus;
  /** Why `status` is missing: ERR_TIMEOUT (up but not answering), ERR_PEER_UNREACHABLE, ... */
  readonly code?: ErrorCode;
  /** `code` and its message, one line. */
  readonly error?: string;
}

/**
 * Codes after which the same request is tried at another master (or again). Not ERR_PROTOCOL or
 * ERR_INTERNAL: a request a master refuses as malformed, or that trips a bug, fails the same way
 * everywhere, and the caller must hear so at once rather than ERR_NO_QUORUM after the deadline.
 */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set(['ERR_NOT_LEADER', 'ERR_TIMEOUT', 'ERR_PEER_UNREACHABLE', 'ERR_STREAM_CLOSED']);

/**
 * Talks to the metadata masters: finds the leader, follows "not leader" hints, moves to the
 * next master on a timeout, and gives up with ERR_NO_QUORUM after `timeoutMs` — never a hang.
 * Writes carry (clientId, seq) and a retry reuses the seq, so a write whose answer was lost
 * applies once. Writes from one client are serialised (the masters remember one outstanding
 * request per client); run several clients for concurrency.
 */
export class MetaClient {
  readonly clientId = randomBytes(8).toString('hex');
  readonly #o: MetaClientOptions;
  #seq = 0;
  #leader: string | undefined;
  #writeChain: Promise<unknown> = Promise.resolve();
  /** Fires at close(): retries and pauses end at once, so a stopping process is not kept alive. */
  readonly #closing = new AbortController();

  constructor(options: MetaClientOptions) {
    if (options.masters.length === 0) throw new DfsError('ERR_INVALID_ARGUMENT', 'no master addresses given');
    this.#o = options;
  }

  /**
   * Applies a write through Raft and returns the state machine's value. `stored` (with
   * commitFile): the pipeline acks, so the leader knows where the new chunks are at once.
   */
  write(cmd: WriteCommand, extra: { stored?: StoredAck[]; uploadId?: string } = {}): Promise<unknown> {
    const run = this.#writeChain.then(() => {
      const seq = ++this.#seq;
      const request: MetaRequest = {
        type: 'write',
        clientId: this.clientId,
        seq,
        cmd,
        ...(extra.stored ? { stored: extra.stored } : {}),
        ...(extra.uploadId ? { uploadId: extra.uploadId } : {}),
      };
      return this.#leaderRequest(request);
    });
    this.#writeChain = run.catch(() => {});
    return run;
  }

  /**
   * Ends this client: requests under way and later ones fail with ERR_ABORTED instead of
   * retrying until their deadline (which would keep a stopping node's process alive for it).
   */
  close(): void {
    this.#closing.abort(new DfsError('ERR_ABORTED', 'the metadata client is closed'));
  }

  /** A leader-only request that is not a write (heartbeat, report, place, locate...). */
  leaderRequest(request: MetaRequest): Promise<unknown> {
    return this.#leaderRequest(request);
  }

  async stat(path: string, options: { stale?: boolean } = {}): Promise<Entry> {
    return (await this.#read({ type: 'stat', path, ...(options.stale ? { stale: true } : {}) }, options.stale)) as Entry;
  }

  async list(path: string, options: { after?: string; limit?: number; stale?: boolean } = {}): Promise<{ entries: ListedEntry[]; next?: string }> {
    const request: MetaRequest = {
      type: 'list',
      path,
      ...(options.after !== undefined ? { after: options.after } : {}),
      ...(options.limit !== undefined ? { limit: options.limit } : {}),
      ...(options.stale ? { stale: true } : {}),
    };
    return (await this.#read(request, options.stale)) as { entries: ListedEntry[]; next?: string };
  }

  // ---- users, grants, quotas ----

  /** Logs in: checks the password on the leader and returns a token (and who it names). */
  async login(user: string, password: string, options: { ttlMs?: number } = {}): Promise<LoginResult> {
    return (await this.#leaderRequest({ type: 'login', user, password, ...(options.ttlMs !== undefined ? { ttlMs: options.ttlMs } : {}) })) as LoginResult;
  }

  /** Who the masters take this client for (its token, the cluster's admin key, or a master). */
  async whoami(): Promise<WhoAmI> {
    return (await this.#leaderRequest({ type: 'whoami' })) as WhoAmI;
  }

  async addUser(name: string, password: string, roles: Role[]): Promise<void> {
    await this.write({ op: 'addUser', name, password, roles });
  }

  async removeUser(name: string): Promise<void> {
    await this.write({ op: 'removeUser', name });
  }

  /** An admin sets anyone's password; a user changes their own, giving the old one. */
  async setPassword(name: string, password: string, oldPassword?: string): Promise<void> {
    await this.write({ op: 'setPassword', name, password, ...(oldPassword !== undefined ? { oldPassword } : {}) });
  }

  async setUserDisabled(name: string, disabled: boolean): Promise<void> {
    await this.write({ op: 'setUserDisabled', name, disabled });
  }

  async setUserRoles(name: string, roles: Role[]): Promise<void> {
    await this.write({ op: 'setUserRoles', name, roles });
  }

  /** Logs the user out everywhere: every token issued before stops working. */
  async revokeTokens(name: string): Promise<void> {
    await this.write({ op: 'revokeTokens', name });
  }

  async listUsers(): Promise<UserView[]> {
    return (await this.#leaderRequest({ type: 'users' })) as UserView[];
  }

  /** Gives `principal` (a user name or `@role`) `level` on `path` and below. */
  async grant(path: string, principal: string, level: Level): Promise<void> {
    await this.write({ op: 'grant', path, principal, level });
  }

  /** Takes back `principal`'s grant on exactly `path` (only if it is `level`, when given). */
  async revoke(path: string, principal: string, level?: Level): Promise<void> {
    await this.write({ op: 'revoke', path, principal, ...(level !== undefined ? { level } : {}) });
  }

  async acl(path: string): Promise<AclView> {
    return (await this.#leaderRequest({ type: 'acl', path })) as AclView;
  }

  /** Sets a user's limits; an absent one is unlimited. */
  async setQuota(user: string, quota: { maxBytes?: number; maxFiles?: number }): Promise<void> {
    await this.write({ op: 'setQuota', user, ...(quota.maxBytes !== undefined ? { maxBytes: quota.maxBytes } : {}), ...(quota.maxFiles !== undefined ? { maxFiles: quota.maxFiles } : {}) });
  }

  /**
   * Every master's status, or the error that kept it from answering (`code`: ERR_TIMEOUT for one
   * that accepts connections but does not answer, such as a stopped process), in the order given.
   * One attempt each, all at once: bounded by `attemptTimeoutMs` whatever the masters do.
   */
  async statusAll(options: { withHash?: boolean } = {}): Promise<MasterStatusEntry[]> {
    return Promise.all(
      this.#o.masters.map(async (addr): Promise<MasterStatusEntry> => {
        try {
          const r = await this.#call(addr, { type: 'status', ...(options.withHash ? { withHash: true } : {}) }, this.#o.attemptTimeoutMs ?? 3_000);
          if (!r.ok) throw new DfsError((r.code ?? 'ERR_PROTOCOL') as ErrorCode, r.message ?? 'refused by the master');
          return { addr, status: r.value as MasterStatus };
        } catch (err) {
          if (isDfsError(err)) return { addr, code: err.code, error: `${err.code}: ${err.message}` };
          return { addr, code: 'ERR_INTERNAL', error: String(err) };
        }
      }),
    );
  }

  /** Resolves with the leader's status once one is elected; ERR_NO_QUORUM after `timeoutMs`. */
  async waitForLeader(timeoutMs = 15_000): Promise<MasterStatus> {
    const deadline = performance.now() + timeoutMs;
    for (let pauseMs = 20; ; pauseMs = Math.min(pauseMs * 2, 200)) {
      const leader = (await this.statusAll()).find((s) => s.status?.role === 'leader')?.status;
      if (leader) return leader;
      if (performance.now() > deadline) throw new DfsError('ERR_NO_QUORUM', `no leader elected within ${timeoutMs} ms`);
      await this.#pause(pauseMs);
    }
  }

  async #read(request: MetaRequest, stale: boolean | undefined): Promise<unknown> {
    if (!stale) return this.#leaderRequest(request);
    let lastError: unknown;
    for (const addr of this.#order()) {
      try {
        const r = await this.#call(addr, request, this.#o.attemptTimeoutMs ?? 3_000);
        if (r.ok) return r.value;
        throw new DfsError((r.code ?? 'ERR_PROTOCOL') as ErrorCode, r.message ?? 'refused');
      } catch (err) {
        if (!isDfsError(err) || !RETRYABLE.has(err.code)) throw err;
        lastError = err;
      }
    }
    throw new DfsError('ERR_NO_QUORUM', `no master answered: ${(lastError as Error)?.message}`);
  }

  /** Sends `request` to the leader, wherever it is, within the overall deadline. */
  async #leaderRequest(request: MetaRequest): Promise<unknown> {
    const deadline = performance.now() + (this.#o.timeoutMs ?? 15_000);
    const attemptTimeoutMs = this.#o.attemptTimeoutMs ?? 3_000;
    const order = this.#order();
    let next = 0;
    let target = this.#leader ?? order[0]!;
    let backoffMs = 25;
    const tried: string[] = [];
    for (let attempt = 0; ; attempt++) {
      this.#closing.signal.throwIfAborted();
      const remaining = deadline - performance.now();
      if (remaining <= 0 || attempt > 1_000) {
        throw new DfsError('ERR_NO_QUORUM', `no leader answered within ${this.#o.timeoutMs ?? 15_000} ms (${tried.slice(-3).join('; ')}); are a majority of the masters running?`);
      }
      let response: MetaResponse | undefined;
      try {
        response = await this.#call(target, request, Math.min(attemptTimeoutMs, remaining));
      } catch (err) {
        // A master restarting serves the protocol a moment after it accepts connections.
        const notYet = isDfsError(err, 'ERR_PROTOCOL') && /does not support/.test(err.message);
        if (!isDfsError(err) || (!RETRYABLE.has(err.code) && !notYet)) throw err;
        tried.push(`${shortAddr(target)}: ${err.code}`);
      }
      if (response?.ok) {
        this.#leader = target;
        return response.value;
      }
      if (response?.code === 'ERR_OVERLOADED' || response?.code === 'ERR_UNAVAILABLE') {
        // The leader sheds load (too much in flight from us or from everyone), or a new cluster's
        // leader has not applied its signing key yet: wait, then again.
        tried.push(`${shortAddr(target)}: ${response.code}`);
        await this.#pause(Math.min(backoffMs, Math.max(0, deadline - performance.now())));
        backoffMs = Math.min(backoffMs * 2, 400);
        continue;
      }
      if (response && response.code !== 'ERR_NOT_LEADER' && response.code !== 'ERR_TIMEOUT') {
        throw new DfsError((response.code ?? 'ERR_PROTOCOL') as ErrorCode, response.message ?? 'refused by the master');
      }
      if (response) tried.push(`${shortAddr(target)}: ${response.code}`);
      this.#leader = undefined;
      const hinted = response?.leaderAddr ?? undefined;
      // A hint is followed only to a master this client was configured with: a master's answer
      // must not send it (and a storage node's heartbeats) to a peer of the master's choosing.
      if (hinted && hinted !== target && this.#o.masters.includes(hinted)) {
        target = hinted; // follow the hint at once
        continue;
      }
      // No leader known (an election is under way) or this one is down: next master, after a pause.
      target = order[next++ % order.length]!;
      await this.#pause(Math.min(backoffMs, Math.max(0, deadline - performance.now())));
      backoffMs = Math.min(backoffMs * 2, 400);
    }
  }

  /** Waits `ms`; ERR_ABORTED at once if the client is closed meanwhile. */
  async #pause(ms: number): Promise<void> {
    const signal = this.#closing.signal;
    await sleep(ms, undefined, { signal }).catch(() => {
      throw signal.reason as DfsError;
    });
  }

  #order(): string[] {
    const masters = [...this.#o.masters];
    return this.#leader ? [this.#leader, ...masters.filter((m) => m !== this.#leader)] : masters;
  }

  async #call(addr: string, request: MetaRequest, timeoutMs: number): Promise<MetaResponse> {
    this.#closing.signal.throwIfAborted();
    const token = typeof this.#o.token === 'function' ? this.#o.token() : this.#o.token;
    const sent: MetaRequest = token !== undefined && token !== '' && request.token === undefined ? { ...request, token } : request;
    return channelsOf(this.#o.peer).channel(addr).call(sent, metaResponseSchema, { timeoutMs });
  }
}

function shortAddr(addr: string): string {
  return addr.replace(/\/p2p\/(\w{6})\w+$/, '/p2p/$1…');
}

/** Every MetaClient on one peer shares its streams to the masters (one per master). */
const pools = new WeakMap<DfsPeer, RpcChannelPool>();

function channelsOf(peer: DfsPeer): RpcChannelPool {
  let pool = pools.get(peer);
  if (!pool) {
    pool = new RpcChannelPool(peer, META_PROTOCOL, { maxFrameBytes: META_MAX_FRAME_BYTES });
    pools.set(peer, pool);
  }
  return pool;
}
