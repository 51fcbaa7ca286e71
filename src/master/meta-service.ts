import { loadBlake3 } from '../chunker/index.ts';
import { type Clock, type Rng, systemClock, systemRng } from '../env/index.ts';
import { DfsError, isDfsError } from '../errors/index.ts';
import { type Logger, silentLogger } from '../log/index.ts';
import { type DfsPeer, peerIdInAddr, serveMuxRpc } from '../net/index.ts';
import { type HashPasswordOptions, isAuthError, type LoginLimiterOptions, type Operation, type Role, putDelta, type VerifyPasswordOptions, wouldExceed } from '../auth/index.ts';
import {
  type AclView,
  type ApplyResult,
  type Manifest,
  type MasterStatus,
  normalizePath,
  parentOf,
  ROOT,
  type UserView,
  type NodeView,
  META_MAX_FRAME_BYTES,
  META_PROTOCOL,
  type MetaCommand,
  type MetaRequest,
  type MetaResponse,
  metaRequestSchema,
  validateManifest,
  type StoredAck,
  type WriteCommand,
} from '../meta/index.ts';
import { encodeEnvelope, type MetaMachine } from './meta-machine.ts';
import { hasChunks } from '../protocol/chunk-client.ts';
import { verifyReceipt } from '../net/receipt.ts';
import { addrOf, DataPlane, type DataPlaneOptions } from './data-plane.ts';
import type { RaftDriver } from './raft-driver.ts';
import { Access, type Caller, newClusterKeyCommand } from './access.ts';
import { PeerRateLimit } from './rate-limit.ts';
import type { LocatedChunk, Placement } from '../meta/index.ts';

export type DataPlaneSettings = Pick<DataPlaneOptions, 'gcGraceMs'>;

/** Who sent a request: the peer id Noise authenticated. */
export interface RequestContext {
  readonly peerId: string;
}

/** The parts of the repair task the service reports to and shows. */
export interface RepairView {
  readonly health: NonNullable<MasterStatus['chunks']>;
  inflightFor(nodeId: string): number;
  noteResults(nodeId: string, results: ReadonlyArray<{ id: string; to: string; ok: boolean; code?: string | undefined }>): void;
  requestRebalance(maxChunks: number): void;
}

const MiB = 1024 * 1024;

/** The login user a ticket is issued for (nodes share their budget per user); none for masters and nodes. */
function userOf(caller: Caller): string | undefined {
  return caller.kind === 'token' ? caller.identity?.user : undefined;
}

/** Whether the caller may write somewhere without naming where: a master, a writer or an admin. */
function writesAnywhere(caller: Caller, roles: readonly Role[]): boolean {
  return caller.kind === 'master' || roles.includes('writer') || roles.includes('admin');
}

/** Registered storage nodes waiting for `dfs node admit` at most: more registrations are refused. */
export const MAX_PENDING_NODES = 64;

/** Copies handed to one node per heartbeat answer. */
const REPLICATE_PER_ANSWER = 64;

export interface MetaServiceOptions {
  readonly name: string;
  readonly peer: DfsPeer;
  readonly driver: RaftDriver;
  readonly machine: MetaMachine;
  /** Every master's peer id → address, to turn a leader id into somewhere a client can go. */
  readonly masterAddrs: ReadonlyMap<string, string>;
  readonly clock?: Clock;
  readonly rng?: Rng;
  readonly logger?: Logger;
  readonly dataPlane?: DataPlaneSettings;
  /** The leader's repair task (results from heartbeats go to it; `nodes` and `status` show it). */
  readonly repair?: () => RepairView | undefined;
  /** New storage nodes get data at once (a local cluster), or wait for `dfs node admit`. Default false. */
  readonly autoAdmit?: boolean;
  /**
   * Peers that hold the cluster's admin key: the masters take them for user `admin`, role admin
   * (a key-based root login). Everyone else needs a login token.
   */
  readonly adminPeers?: ReadonlySet<string>;
  /** Argon2 parameters for new password hashes (tests pass cheap ones; default OWASP's). */
  readonly passwords?: HashPasswordOptions;
  readonly verifyPasswords?: VerifyPasswordOptions;
  readonly loginLimits?: Omit<LoginLimiterOptions, 'clock'>;
  /** Lifetime of chunk tickets (default 60 s). */
  readonly ticketTtlMs?: number;
  /** Uploads one peer may have open at once (default 64): more get ERR_OVERLOADED. */
  readonly maxUploadsPerPeer?: number;
  /** `status` with a state hash, bad-replica reports and scrubs: per peer, a burst then this rate. */
  readonly costlyRequestsPerSecond?: number;
  readonly costlyRequestBurst?: number;
}

/**
 * Serves `/dfs/meta/1.0.0` on a master: writes are proposed through Raft on the leader (stamped
 * with owner and time, so apply stays deterministic), reads are served after a ReadIndex barrier
 * on the leader or straight from local state when the client accepts stale data.
 */
export class MetaService {
  readonly #o: MetaServiceOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #startedAt: number;
  /** The leader's soft state about data; made anew each time this master becomes leader. */
  #dataPlane: DataPlane | undefined;
  readonly access: Access;
  readonly #hashLimit: PeerRateLimit;
  readonly #badReplicaLimit: PeerRateLimit;
  readonly #scrubLimit: PeerRateLimit;
  readonly #registerLimit: PeerRateLimit;
  /** A cluster key proposal under way (see #ensureClusterKey). */
  #proposingKey: Promise<void> | undefined;
  /** Each manifest's chunk ids, for checking that a located chunk belongs to the named file. */
  readonly #chunkSets = new WeakMap<Manifest, ReadonlySet<string>>();

  constructor(options: MetaServiceOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    const logger = options.logger ?? silentLogger;
    this.#log = logger.child({ component: 'meta' });
    this.#startedAt = this.#clock.now();
    this.access = new Access({
      state: () => options.machine.state,
      masterAddrs: options.masterAddrs,
      adminPeers: options.adminPeers ?? new Set(),
      clock: this.#clock,
      logger,
      ...(options.passwords ? { passwords: options.passwords } : {}),
      ...(options.verifyPasswords ? { verifyPasswords: options.verifyPasswords } : {}),
      ...(options.loginLimits ? { loginLimits: options.loginLimits } : {}),
      ...(options.ticketTtlMs !== undefined ? { ticketTtlMs: options.ticketTtlMs } : {}),
    });
    const perSecond = options.costlyRequestsPerSecond ?? 2;
    const burst = options.costlyRequestBurst ?? 20;
    this.#hashLimit = new PeerRateLimit({ clock: this.#clock, perSecond, burst });
    this.#badReplicaLimit = new PeerRateLimit({ clock: this.#clock, perSecond: perSecond * 50, burst: burst * 50 });
    this.#scrubLimit = new PeerRateLimit({ clock: this.#clock, perSecond, burst });
    this.#registerLimit = new PeerRateLimit({ clock: this.#clock, perSecond, burst });
    // The cluster key is proposed as soon as this master leads, served or not.
    options.driver.onChange(() => this.#ensureClusterKey());
  }

  /**
   * A new cluster's first leader gives it its signing key: proposed from the injected rng when
   * the state has none. A second proposal (two leaders racing, or one whose state lags) is
   * refused at apply, so the first key stays.
   */
  #ensureClusterKey(): void {
    if (this.#proposingKey || this.#o.machine.state.authKey !== undefined || this.#o.driver.role !== 'leader') return;
    this.#proposingKey = (async () => {
      try {
        await this.proposeOwn(await newClusterKeyCommand(this.#o.rng ?? systemRng));
      } catch (err) {
        this.#log.debug({ err: (err as Error).message }, 'cluster key proposal failed; the next leader or request tries again');
      } finally {
        this.#proposingKey = undefined;
      }
    })();
  }

  /** The data plane while this master leads, else undefined. */
  get dataPlane(): DataPlane | undefined {
    return this.#dataPlane;
  }

  #followLeadership(): void {
    const leading = this.#o.driver.role === 'leader';
    // A plane belongs to one term: its fences are issued from it.
    if (this.#dataPlane && (!leading || this.#dataPlaneTerm !== this.#o.driver.term)) this.#dataPlane = undefined;
    if (leading && !this.#dataPlane) {
      const state = () => this.#o.machine.state;
      this.#dataPlaneTerm = this.#o.driver.term;
      this.#dataPlane = new DataPlane({
        now: () => this.#clock.now(),
        rng: this.#o.rng ?? systemRng,
        term: this.#dataPlaneTerm,
        nodes: () => state().nodes(),
        node: (id) => state().node(id),
        replicationFactor: () => state().settings.replicationFactor,
        refCount: (id) => state().refCount(id),
        ...this.#o.dataPlane,
      });
    }
  }

  #dataPlaneTerm = 0;

  async start(): Promise<void> {
    this.#o.driver.onChange(() => this.#followLeadership());
    await serveMuxRpc(this.#o.peer, META_PROTOCOL, metaRequestSchema, (request, ctx) => this.handle(request, { peerId: ctx.remote.peerId }), {
      maxFrameBytes: META_MAX_FRAME_BYTES,
      // A client keeps one stream per master; a few more for tools.
      maxInboundStreams: 16,
      // One largest request per peer at a time, a few at once in all.
      maxBytesPerPeer: META_MAX_FRAME_BYTES + MiB,
      maxBytesTotal: 6 * META_MAX_FRAME_BYTES,
      handlerTimeoutMs: 15_000,
    });
  }

  /**
   * Answers one request from `from`, the Noise-authenticated peer that sent it. The caller's
   * identity comes from its peer id (a master, the admin key) or its login token (see access.ts);
   * every metadata operation is checked against the policy here, on the master. A storage node
   * speaks only for itself (heartbeat, report, registration under its own peer id); node state
   * changes come only from masters; a client's report of a bad copy is a request to verify it.
   */
  async handle(request: MetaRequest, from: RequestContext): Promise<MetaResponse> {
    const caller = this.access.resolve(request.token, from.peerId);
    try {
      this.#authorizeNodeTraffic(request, caller);
      switch (request.type) {
        case 'status':
          if (request.withHash === true && caller.kind !== 'master') {
            // Hashing serialises the whole state on the event loop (about a second at 200k
            // files): only admins may ask, and not often.
            this.access.check(caller, { op: 'nodes' }, 'status withHash');
            if (!this.#hashLimit.take(from.peerId)) throw new DfsError('ERR_OVERLOADED', 'too many state-hash requests from this peer: retry in a few seconds');
          }
          return { ok: true, value: await this.status(request.withHash === true) };
        case 'login':
          this.#leaderPlane();
          return { ok: true, value: await this.access.login(request.user, request.password, from.peerId, request.ttlMs) };
        case 'whoami': {
          const identity = this.access.identify(caller, 'whoami');
          return { ok: true, value: { user: identity.user, roles: [...identity.roles], via: caller.kind, ...(caller.expiresAtMs !== undefined ? { expiresAtMs: caller.expiresAtMs } : {}) } };
        }
        case 'users':
          this.access.check(caller, { op: 'users' }, 'users');
          return await this.#read(false, () => this.#userViews());
        case 'acl':
          this.access.check(caller, { op: 'acl', path: request.path }, 'acl');
          return await this.#read(false, () => this.#aclView(request.path));
        case 'write':
          return await this.#write(request, caller);
        case 'stat':
          this.access.check(caller, { op: 'stat', path: request.path }, 'stat');
          return await this.#read(request.stale === true, () => {
            const entry = this.#o.machine.state.stat(request.path);
            if (!entry) throw new DfsError('ERR_NOT_FOUND', `${request.path}: no such file or directory`);
            return entry;
          });
        case 'list':
          this.access.check(caller, { op: 'ls', path: request.path }, 'list');
          return await this.#read(request.stale === true, () =>
            this.#o.machine.state.list(request.path, { ...(request.after !== undefined ? { after: request.after } : {}), ...(request.limit !== undefined ? { limit: request.limit } : {}) }),
          );
        case 'heartbeat':
          return { ok: true, value: await this.#heartbeat(request) };
        case 'nodes':
          this.access.identify(caller, 'nodes');
          return { ok: true, value: this.#nodeViews() };
        case 'rebalance': {
          this.access.check(caller, { op: 'nodes' }, 'rebalance');
          const repair = this.#o.repair?.();
          this.#leaderPlane();
          if (!repair) throw new DfsError('ERR_NOT_LEADER', 'no repair task on this master');
          repair.requestRebalance(request.maxChunks);
          return { ok: true, value: {} };
        }
        case 'scrubNode':
          this.access.check(caller, { op: 'nodes' }, 'scrubNode');
          if (caller.kind !== 'master' && !this.#scrubLimit.take(from.peerId)) throw new DfsError('ERR_OVERLOADED', 'too many scrub requests from this peer: retry in a few seconds');
          if (!this.#o.machine.state.node(request.nodeId)) throw new DfsError('ERR_NOT_FOUND', `no storage node ${request.nodeId} (see dfs nodes)`);
          this.#leaderPlane().nodes.requestScrub(request.nodeId);
          return { ok: true, value: {} };
        case 'report':
          this.#leaderPlane().report(request.nodeId, request.ids, request.first, request.last);
          return { ok: true, value: {} };
        case 'place':
          return { ok: true, value: await this.#place(request, caller) };
        case 'locate':
          return { ok: true, value: await this.#locate(request, caller) };
        case 'proveStored': {
          const identity = this.access.identify(caller, 'proveStored');
          const plane = this.#leaderPlane();
          const upload = request.uploadId === undefined ? undefined : uploadKey(from.peerId, request.uploadId);
          // Promising chunks keeps them from GC: only for an upload `place` opened (it checked
          // write access) or a caller who may write somewhere (writer, admin, a master).
          const mayWrite = writesAnywhere(caller, identity.roles) || (upload !== undefined && plane.uploads.alive(upload));
          if (!mayWrite) throw this.access.refuse('ERR_FORBIDDEN', `${identity.user} has no upload open here and no writer role: proveStored follows a place`, caller, 'proveStored');
          // Proven chunks are promised to the upload: this leader may not know it yet.
          if (upload !== undefined) plane.uploads.promise(upload, request.acks.map((a) => a.id), from.peerId);
          await this.#recordProof(plane, request.acks);
          return { ok: true, value: {} };
        }
        case 'badReplica':
          this.access.identify(caller, 'badReplica');
          if (caller.kind !== 'master' && !this.#badReplicaLimit.take(from.peerId)) throw new DfsError('ERR_OVERLOADED', 'too many bad-replica reports from this peer: retry later');
          // A claim about another peer: never believed as such. The node is asked to verify.
          this.#leaderPlane().requestVerify(request.nodeId, request.id);
          return { ok: true, value: {} };
      }
    } catch (err) {
      if (!isDfsError(err)) throw err;
      if (err.code === 'ERR_UNAVAILABLE') this.#ensureClusterKey();
      // Not-leader answers are routine (clients follow the hint); anything else is worth a line,
      // as long as the peer is not flooding us with refused requests (then they are counted).
      if (err.code === 'ERR_NOT_LEADER') this.#log.debug({ request: request.type, code: err.code }, 'refused a request');
      // Auth refusals: the access layer wrote the audit line (or counted it) already.
      else if (!isAuthError(err)) {
        const line = this.access.mayLogRefusal(from.peerId);
        if (line.ok) this.#log.info({ request: request.type, code: err.code, reason: err.message, peer: from.peerId, ...(line.unlogged > 0 ? { unlogged: line.unlogged } : {}) }, 'refused a request');
      }
      return this.#refusal(err);
    }
  }

  /** Every user, without password hashes. */
  #userViews(): UserView[] {
    const state = this.#o.machine.state;
    return state.users().map((u) => ({ name: u.name, roles: [...u.roles], disabled: u.disabled, usage: { ...state.usage(u.name) }, ...(u.quota ? { quota: { ...u.quota } } : {}) }));
  }

  /** The owner of `path` and every grant that applies there (its own, then inherited ones, nearest first). */
  #aclView(input: string): AclView {
    const path = normalizePath(input);
    const state = this.#o.machine.state;
    const entry = state.stat(path);
    if (!entry) throw new DfsError('ERR_NOT_FOUND', `${path}: no such file or directory`);
    const grants: AclView['grants'] = [];
    for (let p = path; ; p = parentOf(p)) {
      for (const g of state.grantsAt(p)) grants.push({ path: g.path, principal: g.principal, level: g.level, inherited: p !== path });
      if (p === ROOT) break;
    }
    return { path, owner: path === ROOT ? null : entry.owner, grants };
  }

  /**
   * Requests that speak for a storage node must come from that node; node state changes from
   * masters only; registrations of the caller itself only. ERR_FORBIDDEN (audited) otherwise.
   */
  #authorizeNodeTraffic(request: MetaRequest, caller: Caller): void {
    const forbid = (why: string): never => {
      throw this.access.refuse('ERR_FORBIDDEN', why, caller, request.type);
    };
    const peer = caller.peerId;
    if ((request.type === 'heartbeat' || request.type === 'report') && request.nodeId !== peer) {
      forbid(`peer ${peer} may not speak for storage node ${request.nodeId}`);
    }
    // Only a registered node's word about its own chunks counts (not any peer's that heartbeats).
    if (request.type === 'report' && !this.#o.machine.state.node(peer)) forbid(`peer ${peer} is not a registered storage node`);
    if (request.type !== 'write') return;
    const cmd = request.cmd;
    if (cmd.op === 'registerNode') {
      if (cmd.nodeId !== peer) forbid(`peer ${peer} may register only itself, not ${cmd.nodeId}`);
      // Registration needs no login (a node joins with the cluster secret alone) and each one
      // lands in every master's state: bounded, per peer and in all, before anyone admits them.
      const state = this.#o.machine.state;
      if (caller.kind !== 'master' && !this.#registerLimit.take(peer)) throw new DfsError('ERR_OVERLOADED', 'too many registrations from this peer: retry in a few seconds');
      if (state.node(peer) === undefined && state.nodes().filter((n) => n.state === 'pending').length >= MAX_PENDING_NODES) {
        throw new DfsError('ERR_OVERLOADED', `${MAX_PENDING_NODES} storage nodes already wait for admission: admit or remove some (dfs nodes, dfs node admit|rm) before more may register`);
      }
      // An address naming another peer would send that peer's deletes and checks elsewhere.
      for (const addr of cmd.addrs) {
        const named = peerIdInAddr(addr);
        if (named !== undefined && named !== peer) forbid(`node ${peer} may not register an address of peer ${named} (${addr})`);
      }
    }
    if (cmd.op === 'setNodeState' && caller.kind !== 'master') forbid(`only masters change a node's state; ${peer} is not one`);
  }

  /**
   * What a write asks of the policy, checked now (against the state this leader has applied);
   * returns the identity the command is stamped with. setPassword of oneself needs the old
   * password; revokeTokens of oneself is always allowed.
   */
  async #authorizeWrite(cmd: WriteCommand, caller: Caller): Promise<string> {
    const check = (operation: Operation): string => this.access.check(caller, operation, cmd.op).user;
    switch (cmd.op) {
      case 'registerNode':
        return caller.identity?.user ?? caller.peerId; // checked by #authorizeNodeTraffic
      case 'setNodeState':
        return 'root';
      case 'admitNode':
      case 'drainNode':
      case 'removeNode':
        return check({ op: 'nodes' });
      case 'mkdir':
        return check({ op: 'mkdir', path: cmd.path });
      case 'rm':
        return check({ op: 'rm', path: cmd.path });
      case 'mv':
        return check({ op: 'mv', from: cmd.from, to: cmd.to });
      case 'commitFile':
        return check({ op: 'put', path: cmd.path });
      case 'grant':
      case 'revoke':
        return check({ op: cmd.op, path: cmd.path });
      case 'setPassword':
      case 'revokeTokens': {
        const identity = this.access.identify(caller, cmd.op);
        const self = identity.user === cmd.name && caller.kind === 'token';
        if (identity.roles.includes('admin') || (self && cmd.op === 'revokeTokens')) return identity.user;
        if (!self) return check({ op: 'users' });
        if (cmd.op === 'setPassword' && cmd.oldPassword !== undefined && (await this.access.checkPassword(cmd.name, cmd.oldPassword, caller))) return identity.user;
        throw this.access.refuse('ERR_FORBIDDEN', 'the current password is wrong or missing: give it to change your password (dfs user passwd)', caller, cmd.op);
      }
      case 'addUser':
      case 'removeUser':
      case 'setUserDisabled':
      case 'setUserRoles':
      case 'setQuota':
        return check({ op: 'users' });
    }
  }

  /**
   * A node's heartbeat: its load and chunk changes are recorded; the answer carries its commands.
   * `fence`: a node that restarted refuses deletes decided before it (see FenceClock); `verify`:
   * chunks a client found bad there; `replicate`: copies to make (repair); `nodes`: the storage
   * nodes it may dial, when its list is out of date.
   */
  async #heartbeat(request: Extract<MetaRequest, { type: 'heartbeat' }>): Promise<object> {
    const plane = this.#leaderPlane();
    const registered = this.#o.machine.state.node(request.nodeId) !== undefined;
    // The public half of the cluster key: what the node checks chunk tickets with.
    const keys = this.access.keys();
    const clusterKey = keys ? { clusterKey: keys.publicText } : {};
    // An unregistered peer is told to register, and nothing it says is recorded.
    if (!registered) return { registered, fullReportWanted: true, fence: plane.fences.peek(), verify: [], replicate: [], ...clusterKey };
    const { fullReportWanted } = plane.heartbeat(request.nodeId, request, request.added, request.removed);
    if (request.replicated && request.replicated.length > 0) this.#o.repair?.()?.noteResults(request.nodeId, request.replicated);
    const nodes = plane.dialableNodes();
    const nodesVersion = versionOf(nodes);
    // Copies are handed out only with a ticket (bearer: this node, which sends the copy); before
    // the key has applied they wait in the queue.
    const replicate = keys
      ? await Promise.all(plane.nodes.takeReplicate(request.nodeId, REPLICATE_PER_ANSWER).map(async (c) => ({ ...c, ticket: await this.access.ticket('replicate', [c.id], request.nodeId, c.fence) })))
      : [];
    return {
      registered,
      fullReportWanted,
      fence: plane.fences.peek(),
      verify: plane.takeVerifyRequests(request.nodeId),
      replicate,
      ...clusterKey,
      ...(plane.nodes.takeScrub(request.nodeId) ? { scrubNow: true } : {}),
      nodesVersion,
      ...(request.nodesVersion === nodesVersion ? {} : { nodes }),
    };
  }

  /** Every registered storage node, as the leader sees it now. */
  #nodeViews(): NodeView[] {
    const plane = this.#leaderPlane();
    const repair = this.#o.repair?.();
    return this.#o.machine.state.nodes().map((n) => {
      const load = plane.nodes.load(n.id);
      return {
        id: n.id,
        name: n.name ?? null,
        addr: addrOf(n),
        state: n.state,
        capacityBytes: load.capacityBytes || n.capacityBytes,
        usedBytes: load.usedBytes,
        freeBytes: load.freeBytes,
        chunks: plane.locations.chunksOf(n.id).size,
        heartbeatAgeMs: plane.nodes.heardSinceStart(n.id) ? plane.nodes.silentForMs(n.id) : null,
        repairsInFlight: repair?.inflightFor(n.id) ?? 0,
      };
    });
  }

  /**
   * Proposes a command of the leader's own (a node state change from the failure detector):
   * no client session, stamped like any other.
   */
  async proposeOwn(cmd: MetaCommand): Promise<ApplyResult> {
    if (this.#o.driver.role !== 'leader') throw new DfsError('ERR_NOT_LEADER', 'not the leader');
    return (await this.#o.driver.propose(encodeEnvelope({ clientId: '', seq: 0, cmd }))) as ApplyResult;
  }

  /**
   * Admission only of a pending node; drain only of an admitted one; removal only once no
   * referenced chunk would lose a copy it needs (unless forced, and then the refusal's count is
   * logged as what becomes under-replicated).
   */
  #checkNodeChange(cmd: Extract<WriteCommand, { op: 'admitNode' | 'drainNode' | 'removeNode' }>): void {
    const node = this.#o.machine.state.node(cmd.nodeId);
    if (!node) throw new DfsError('ERR_NOT_FOUND', `no storage node ${cmd.nodeId} (see dfs nodes)`);
    if (cmd.op === 'admitNode' && node.state !== 'pending') throw new DfsError('ERR_INVALID_ARGUMENT', `node ${cmd.nodeId} is ${node.state}, not pending: nothing to admit`);
    if (cmd.op === 'drainNode' && (node.state === 'pending' || node.state === 'draining')) throw new DfsError('ERR_INVALID_ARGUMENT', `node ${cmd.nodeId} is ${node.state}: nothing to drain`);
    if (cmd.op !== 'removeNode') return;
    if (!cmd.force && !this.#leaderPlane().nodes.reported(cmd.nodeId) && node.state !== 'dead') {
      throw new DfsError('ERR_NOT_EMPTY', `node ${cmd.nodeId} has not told this leader what it holds yet: try again shortly, or --force`);
    }
    const lacking = this.#chunksOnlyOn(cmd.nodeId);
    if (lacking > 0 && !cmd.force) {
      throw new DfsError('ERR_NOT_EMPTY', `node ${cmd.nodeId} still holds ${lacking} chunk(s) with too few copies elsewhere: drain it first (dfs node drain), or --force to remove it anyway`);
    }
    if (lacking > 0) this.#log.warn({ node: cmd.nodeId, underReplicated: lacking }, 'node removed by force: chunks become under-replicated');
  }

  /** Referenced chunks on `nodeId` with fewer than RF copies on other counted nodes. */
  #chunksOnlyOn(nodeId: string): number {
    const plane = this.#leaderPlane();
    const state = this.#o.machine.state;
    const rf = state.settings.replicationFactor;
    const counted = new Set(state.nodes().filter((n) => n.id !== nodeId && (n.state === 'alive' || n.state === 'suspect')).map((n) => n.id));
    let lacking = 0;
    for (const id of plane.locations.chunksOf(nodeId)) {
      if (state.refCount(id) === 0) continue;
      let elsewhere = 0;
      for (const h of plane.locations.holders(id)) if (counted.has(h)) elsewhere++;
      if (elsewhere < rf) lacking++;
    }
    return lacking;
  }

  /** The state hash at the applied index, computed once per index (it costs a full pass). */
  #hashAt: { index: number; hash: string } | undefined;

  async #stateHash(): Promise<string> {
    const index = this.#o.driver.appliedIndex;
    const cached = this.#hashAt;
    if (cached !== undefined && cached.index === index) return cached.hash;
    const blake3 = await loadBlake3();
    // Read the index and hash together, with no await between them.
    const fresh = { index: this.#o.driver.appliedIndex, hash: this.#o.machine.state.stateHash(blake3) };
    this.#hashAt = fresh;
    return fresh.hash;
  }

  async status(withHash = false): Promise<MasterStatus> {
    const d = this.#o.driver;
    const s = d.status();
    const followerLag: Record<string, number> = {};
    if (s.role === 'leader') {
      for (const id of s.config.voters) {
        const pr = d.progressOf(id);
        if (id !== s.id && pr) followerLag[id] = Math.max(0, s.lastIndex - pr.match);
      }
    }
    const counts = this.#o.machine.state.counts;
    return {
      name: this.#o.name,
      peerId: this.#o.peer.peerId,
      addrs: this.#o.peer.listenAddrs,
      role: s.role,
      term: s.term,
      leaderId: s.leaderId,
      commitIndex: s.commit,
      appliedIndex: d.appliedIndex,
      lastIndex: s.lastIndex,
      snapshotIndex: s.snapshotIndex,
      ...(s.role === 'leader' ? { followerLag } : {}),
      ...(this.#dataPlane ? { liveNodes: this.#dataPlane.liveNodes().length } : {}),
      ...(this.#dataPlane && this.#o.repair?.() ? { chunks: this.#o.repair()!.health } : {}),
      counts: { entries: counts.entries, files: counts.files, nodes: counts.nodes },
      uptimeMs: this.#clock.now() - this.#startedAt,
      raft: { electionsStarted: d.stats.electionsStarted, becameLeader: d.stats.becameLeader, snapshotsSent: d.stats.snapshotsSent, snapshotsRestored: d.stats.snapshotsRestored },
      ...(withHash ? { stateHash: await this.#stateHash() } : {}),
    };
  }

  #leaderPlane(): DataPlane {
    this.#followLeadership();
    if (!this.#dataPlane) throw new DfsError('ERR_NOT_LEADER', 'not the leader');
    return this.#dataPlane;
  }

  /**
   * Where to store chunks, each new one with its put ticket (bearer: the caller, under the
   * placement's fence). With `path`: write permission there and the owner's quota (with
   * `fileBytes`, the whole file's size, so a put over quota fails before any chunk is sent).
   * Without: the caller must be a writer or an admin.
   */
  async #place(request: Extract<MetaRequest, { type: 'place' }>, caller: Caller): Promise<Placement[]> {
    const { chunks } = request;
    const exclude = new Set(request.exclude ?? []);
    const plane = this.#leaderPlane(); // a follower points at the leader before anything else
    let identity = this.access.identify(caller, 'place', request.path);
    const uploadId = request.uploadId === undefined ? undefined : uploadKey(caller.peerId, request.uploadId);
    if (request.path !== undefined) {
      identity = this.access.check(caller, { op: 'put', path: request.path }, 'place');
      // The file is as large as the client says or as what it placed so far, whichever is more
      // (a client claiming 0 gets no more room); the user's other open uploads count too.
      const batchBytes = chunks.reduce((sum, c) => sum + c.size, 0);
      const placedBytes = (uploadId === undefined ? 0 : plane.uploads.bytesOf(uploadId)) + batchBytes;
      const fileBytes = Math.max(request.fileBytes ?? 0, placedBytes);
      this.#checkQuota(caller, identity.user, request.path, fileBytes, plane.uploads.pendingBytesOf(identity.user, uploadId));
    } else if (!writesAnywhere(caller, identity.roles)) {
      throw this.access.refuse('ERR_FORBIDDEN', `${identity.user} may not store chunks without naming the file: send the path being written (a newer dfs does)`, caller, 'place');
    }
    this.access.requireKeys();
    const rf = this.#o.machine.state.settings.replicationFactor;
    const placed = plane.place(chunks, exclude, uploadId, caller.peerId, identity.user);
    const shortAt = placed.findIndex((p) => 'targets' in p && p.targets.length < rf);
    if (shortAt >= 0) {
      // A new leader that has not heard every node yet knows neither their room nor their
      // state: "not yet", which clients retry, rather than blaming the cluster.
      const unheard = plane.liveNodes().filter((n) => !plane.nodes.heardSinceStart(n.id)).length;
      if (unheard > 0 && this.#clock.now() - plane.startedMs < 15_000) {
        throw new DfsError('ERR_TIMEOUT', `this leader took over moments ago and has not heard ${unheard} storage node(s) yet; retry`);
      }
      // Say which shortage it is: nodes down (or failed by this client), or nodes full.
      const live = plane.liveNodes();
      const usable = live.filter((n) => !exclude.has(n.id)).length;
      const size = chunks[shortAt]!.size;
      const withRoom = plane.nodesWithRoom(size, exclude);
      if (usable >= rf) {
        throw new DfsError('ERR_NO_SPACE', `only ${withRoom} of ${usable} storage node(s) have room for a ${size}-byte chunk, ${rf} replicas are needed: free space or add nodes`);
      }
      const failed = live.length - usable;
      throw new DfsError(
        'ERR_UNDER_REPLICATED',
        `${usable} storage node(s) can take data${failed > 0 ? ` (${failed} more failed for this upload)` : ''}, ${rf} replicas are needed: start more nodes or wait for them to rejoin`,
      );
    }
    return Promise.all(
      placed.map(async (p): Promise<Placement> => ('targets' in p ? { ...p, ticket: await this.access.ticket('put', [p.id], caller.peerId, p.fence, userOf(caller)) } : p)),
    );
  }

  /** The leader's quota courtesy check before any chunk moves (apply checks again at commit). */
  #checkQuota(caller: Caller, user: string, path: string, fileBytes: number, pendingBytes: number): void {
    const state = this.#o.machine.state;
    const quota = state.user(user)?.quota;
    if (quota === undefined) return;
    const existing = state.stat(path);
    const put = putDelta(fileBytes, existing?.kind === 'file' && existing.owner === user ? existing.size : undefined);
    const excess = wouldExceed(state.usage(user), quota, pendingBytes + put.addBytes, put.addFiles);
    if (excess) throw this.access.refuse('ERR_QUOTA', `${user}: ${excess.message}`, caller, 'place', path);
  }

  /**
   * Where chunks are, each with its get ticket (bearer: the caller). With `path`: read permission
   * there, and every id must be a chunk of that file. Without: masters and admins only.
   */
  async #locate(request: Extract<MetaRequest, { type: 'locate' }>, caller: Caller): Promise<LocatedChunk[]> {
    const plane = this.#leaderPlane();
    if (request.path === undefined) {
      this.access.check(caller, { op: 'nodes' }, 'locate');
    } else {
      this.access.check(caller, { op: 'get', path: request.path }, 'locate');
      const entry = this.#o.machine.state.stat(request.path);
      if (entry?.kind !== 'file') throw new DfsError('ERR_FILE_CHANGED', `${request.path} is no longer a file (removed or replaced while being read): read it again`);
      const ids = this.#chunkSet(entry.manifest);
      const stray = request.ids.find((id) => !ids.has(id));
      // Most often a read racing an overwrite (the reader's manifest is the old one); a peer
      // fishing for other files' chunks gets the same answer and no ticket, and an audit line.
      if (stray !== undefined) throw this.access.refuse('ERR_FILE_CHANGED', `${request.path} changed while being read (chunk ${stray} is no longer part of it): read it again`, caller, 'locate', request.path);
    }
    this.access.requireKeys();
    return Promise.all(plane.locate(request.ids).map(async (l) => ({ ...l, ticket: await this.access.ticket('get', [l.id], caller.peerId, undefined, userOf(caller)) })));
  }

  #chunkSet(manifest: Manifest): ReadonlySet<string> {
    let ids = this.#chunkSets.get(manifest);
    if (!ids) {
      ids = new Set(manifest.chunks.map(([id]) => id));
      this.#chunkSets.set(manifest, ids);
    }
    return ids;
  }

  /**
   * A commit may only name chunks some node is known to hold, and none that GC is deleting. The
   * pipeline acks it carries are believed only while its upload is alive: an upload silent for
   * the grace period may have lost chunks to GC, so its acks may be stale.
   */
  /**
   * A commit may only name chunks some node is known to hold, and none that GC is deleting. A
   * copy counts only on the node's own word: a receipt it signed under a fence issued after the
   * last delete decided for that chunk (so not one a delete may have removed since), or, for an
   * older receipt (another leader's, or a delete decided since), the node's answer when asked.
   */
  async #checkCommit(cmd: Extract<MetaCommand, { op: 'commitFile' }>, stored: StoredAck[] | undefined): Promise<void> {
    const plane = this.#leaderPlane();
    // A chunk GC is deleting may have been put again meanwhile: wait for the delete to settle
    // (nodes keep a chunk put under a later fence), then count what is left.
    await plane.deletesSettled(new Map(cmd.manifest.chunks).keys());
    await this.#recordProof(plane, stored ?? []);
    for (const [id] of new Map(cmd.manifest.chunks)) {
      if (plane.holderCount(id) === 0) {
        throw new DfsError('ERR_UNDER_REPLICATED', `chunk ${id} has no known replica (lost, or being collected); upload the file again`);
      }
    }
  }

  /**
   * Records the copies receipts prove: a valid signature under a fence newer than any delete this
   * leader decided for the chunk counts at once; an older one only once the node confirms it.
   */
  async #recordProof(plane: DataPlane, acks: readonly StoredAck[]): Promise<void> {
    const proven: Array<[string, string[]]> = [];
    const toAsk: Array<[string, string[]]> = [];
    const rf = this.#o.machine.state.settings.replicationFactor;
    let checked = 0;
    for (const ack of acks) {
      const nodes: string[] = [];
      // At most RF receipts an ack, from distinct registered nodes: the signature checks (the
      // costly part) are bounded by what a real upload needs, and the loop yields now and then.
      for (const r of ack.receipts) {
        if (nodes.length >= rf || nodes.includes(r.node) || !this.#o.machine.state.node(r.node)) continue;
        if (++checked % 128 === 0) await new Promise((resolve) => setImmediate(resolve));
        if (await verifyReceipt(ack.id, ack.fence, r)) nodes.push(r.node);
      }
      if (nodes.length === 0) continue;
      if (plane.receiptFresh(ack.id, ack.fence)) proven.push([ack.id, nodes]);
      else toAsk.push([ack.id, nodes]);
    }
    plane.recordStored(proven);
    if (toAsk.length > 0) plane.recordStored(await this.#confirmWithNodes(toAsk));
  }

  /** Keeps only the copies the named nodes confirm they hold (asked directly, in batches). */
  async #confirmWithNodes(acks: Array<[string, string[]]>): Promise<Array<[string, string[]]>> {
    const byNode = new Map<string, string[]>();
    for (const [id, nodes] of acks) for (const n of nodes) byNode.set(n, [...(byNode.get(n) ?? []), id]);
    const confirmed = new Map<string, string[]>();
    await Promise.all(
      [...byNode].map(async ([nodeId, ids]) => {
        const node = this.#o.machine.state.node(nodeId);
        if (!node) return;
        for (let i = 0; i < ids.length; i += 4096) {
          const batch = ids.slice(i, i + 4096);
          const present = await hasChunks(this.#o.peer, addrOf(node), batch, { timeoutMs: 5_000 }).catch(() => batch.map(() => false));
          batch.forEach((id, k) => {
            if (present[k]) confirmed.set(id, [...(confirmed.get(id) ?? []), nodeId]);
          });
        }
      }),
    );
    return [...confirmed];
  }

  async #write(request: Extract<MetaRequest, { type: 'write' }>, caller: Caller): Promise<MetaResponse> {
    if (this.#o.driver.role !== 'leader') return this.#refusal(new DfsError('ERR_NOT_LEADER', 'not the leader'));
    const user = await this.#authorizeWrite(request.cmd, caller);
    const cmd = await this.#stamp(request.cmd, user);
    if (request.cmd.op === 'admitNode' || request.cmd.op === 'drainNode' || request.cmd.op === 'removeNode') this.#checkNodeChange(request.cmd);
    // A commit's chunks are promised to it before anything is awaited: a GC round deciding now
    // calls them off, one deciding earlier is waited for (#checkCommit). Until the entry applies
    // (the references then protect them) or the commit is refused.
    const promise = cmd.op === 'commitFile' ? (request.uploadId !== undefined ? uploadKey(caller.peerId, request.uploadId) : `commit:${request.clientId}:${request.seq}`) : undefined;
    // An upload's promise counts against the peer's cap (a refused commit's outlives the call).
    if (cmd.op === 'commitFile') this.#leaderPlane().uploads.promise(promise!, cmd.manifest.chunks.map(([id]) => id), request.uploadId !== undefined ? caller.peerId : undefined);
    let result: ApplyResult | undefined;
    try {
      if (cmd.op === 'commitFile') {
        // A retry of a commit that already applied (its answer lost in a leader change) gets the
        // first answer, before any check that could only fail now (the new leader may not know
        // the chunks' holders yet). The barrier applies everything committed before it first.
        await this.#o.driver.readBarrier();
        const first = this.#o.machine.state.resultOf(request.clientId, request.seq);
        if (first) {
          result = first; // a commit that applied ends its upload's promise below, as a first try's does
          return first.ok ? { ok: true, value: first.value } : { ok: false, code: first.code, message: first.message };
        }
        await this.#checkCommit(cmd, request.stored);
      }
      result = (await this.#o.driver.propose(encodeEnvelope({ clientId: request.clientId, seq: request.seq, cmd }))) as ApplyResult;
    } finally {
      // An upload's own promise outlives a refused commit (the client may try again); a
      // commit's own promise, and an upload's once committed, end here.
      if (promise !== undefined && (result?.ok === true || request.uploadId === undefined)) this.#dataPlane?.endUpload(promise);
    }
    if (cmd.op === 'removeNode' && result.ok) this.#dataPlane?.forgetNode(cmd.nodeId);
    if (cmd.op === 'registerNode' || cmd.op === 'setNodeState') {
      this.#log.info({ op: cmd.op, nodeId: cmd.nodeId, ...(cmd.op === 'setNodeState' ? { state: cmd.state } : { addrs: cmd.addrs }), ok: result.ok }, 'node state change');
    }
    this.#auditWrite(request.cmd, caller, result);
    if (!result.ok) {
      if (result.code === 'ERR_QUOTA') this.access.refuse('ERR_QUOTA', result.message, caller, cmd.op, 'path' in cmd ? cmd.path : undefined);
      return { ok: false, code: result.code, message: result.message };
    }
    // A node learns the cluster's public key from its registration too.
    const keys = cmd.op === 'registerNode' ? this.access.keys() : undefined;
    return { ok: true, value: keys ? { ...(result.value as object), clusterKey: keys.publicText } : result.value };
  }

  /** Audit lines for user, role, grant and quota changes (never a password). */
  #auditWrite(cmd: WriteCommand, caller: Caller, result: ApplyResult): void {
    const who = { by: caller.identity?.user ?? null, peer: caller.peerId, via: caller.kind, ok: result.ok, ...(result.ok ? {} : { code: result.code }) };
    switch (cmd.op) {
      case 'addUser':
      case 'setUserRoles':
        this.access.audit(cmd.op, { ...who, user: cmd.name, roles: cmd.roles });
        return;
      case 'removeUser':
      case 'revokeTokens':
      case 'setPassword':
        this.access.audit(cmd.op, { ...who, user: cmd.name });
        return;
      case 'setUserDisabled':
        this.access.audit(cmd.op, { ...who, user: cmd.name, disabled: cmd.disabled });
        return;
      case 'grant':
      case 'revoke':
        this.access.audit(cmd.op, { ...who, path: cmd.path, principal: cmd.principal, ...(cmd.level !== undefined ? { level: cmd.level } : {}) });
        return;
      case 'setQuota':
        this.access.audit(cmd.op, { ...who, user: cmd.user, ...(cmd.maxBytes !== undefined ? { maxBytes: cmd.maxBytes } : {}), ...(cmd.maxFiles !== undefined ? { maxFiles: cmd.maxFiles } : {}) });
        return;
      default:
        return;
    }
  }

  /**
   * The full command as the log records it: what the client asked plus owner and time; a
   * password is hashed here, so no clear password ever reaches the Raft log.
   */
  async #stamp(cmd: WriteCommand, user: string): Promise<MetaCommand> {
    const nowMs = this.#clock.now();
    switch (cmd.op) {
      case 'mkdir':
        return { op: 'mkdir', path: cmd.path, parents: cmd.parents, owner: user, nowMs };
      case 'rm':
        return { op: 'rm', path: cmd.path, recursive: cmd.recursive };
      case 'mv':
        return { op: 'mv', from: cmd.from, to: cmd.to, nowMs };
      case 'commitFile':
        // Refused here, before it costs a log entry, if it would be refused at apply.
        return { op: 'commitFile', path: cmd.path, manifest: validateManifest(cmd.manifest), parents: cmd.parents, ifAbsent: cmd.ifAbsent, owner: user, nowMs };
      case 'registerNode':
        return { op: 'registerNode', nodeId: cmd.nodeId, ...(cmd.name !== undefined ? { name: cmd.name } : {}), addrs: cmd.addrs, capacityBytes: cmd.capacityBytes, nowMs, admit: this.#o.autoAdmit === true };
      case 'setNodeState':
        return { op: 'setNodeState', nodeId: cmd.nodeId, state: cmd.state, nowMs };
      case 'admitNode':
        return { op: 'setNodeState', nodeId: cmd.nodeId, state: 'alive', nowMs };
      case 'drainNode':
        return { op: 'setNodeState', nodeId: cmd.nodeId, state: 'draining', nowMs };
      case 'removeNode':
        return { op: 'removeNode', nodeId: cmd.nodeId };
      case 'addUser':
        return { op: 'addUser', name: cmd.name, password: await this.access.hashPassword(cmd.password), roles: cmd.roles, nowMs };
      case 'setPassword':
        return { op: 'setPassword', name: cmd.name, password: await this.access.hashPassword(cmd.password) };
      case 'removeUser':
        // The remover inherits the removed user's entries (never the name's next user).
        return { op: 'removeUser', name: cmd.name, heir: user === cmd.name ? 'root' : user };
      case 'revokeTokens':
        return { op: cmd.op, name: cmd.name };
      case 'setUserDisabled':
        return { op: 'setUserDisabled', name: cmd.name, disabled: cmd.disabled };
      case 'setUserRoles':
        return { op: 'setUserRoles', name: cmd.name, roles: cmd.roles };
      case 'grant':
        return { op: 'grant', path: normalizePath(cmd.path), principal: cmd.principal, level: cmd.level };
      case 'revoke':
        return { op: 'revoke', path: normalizePath(cmd.path), principal: cmd.principal, ...(cmd.level !== undefined ? { level: cmd.level } : {}) };
      case 'setQuota':
        return { op: 'setQuota', user: cmd.user, ...(cmd.maxBytes !== undefined ? { maxBytes: cmd.maxBytes } : {}), ...(cmd.maxFiles !== undefined ? { maxFiles: cmd.maxFiles } : {}) };
    }
  }

  async #read(stale: boolean, read: () => unknown): Promise<MetaResponse> {
    if (!stale) {
      if (this.#o.driver.role !== 'leader') return this.#refusal(new DfsError('ERR_NOT_LEADER', 'not the leader'));
      await this.#o.driver.readBarrier();
    }
    return { ok: true, value: read() };
  }

  #refusal(err: DfsError): MetaResponse {
    if (err.code !== 'ERR_NOT_LEADER') return { ok: false, code: err.code, message: err.message };
    const leaderId = this.#o.driver.leaderId;
    const known = leaderId !== null && leaderId !== this.#o.peer.peerId ? leaderId : null;
    return {
      ok: false,
      code: 'ERR_NOT_LEADER',
      message: known ? `not the leader; the leader is ${known}` : 'not the leader, and no leader is known (an election may be under way)',
      leaderHint: known,
      leaderAddr: known ? (this.#o.masterAddrs.get(known) ?? null) : null,
    };
  }
}

/** Upload ids are the client's to choose: keyed by peer, so one peer's cannot touch another's. */
function uploadKey(peerId: string, uploadId: string): string {
  return `${peerId}/${uploadId}`;
}

/** A short version string of a node list (FNV-1a of ids and addresses). */
function versionOf(nodes: ReadonlyArray<{ id: string; addrs: readonly string[] }>): string {
  let h = 0x811c9dc5;
  for (const n of nodes) {
    for (const part of [n.id, ...n.addrs]) {
      for (let i = 0; i < part.length; i++) h = Math.imul(h ^ part.charCodeAt(i), 0x01000193) >>> 0;
      h = Math.imul(h ^ 0x2c, 0x01000193) >>> 0;
    }
  }
  return `${nodes.length}-${h.toString(16)}`;
}
