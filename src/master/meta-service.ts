import { loadBlake3 } from '../chunker/index.ts';
import { type Clock, type Rng, systemClock, systemRng } from '../env/index.ts';
import { DfsError, isDfsError } from '../errors/index.ts';
import { type Logger, silentLogger } from '../log/index.ts';
import { type DfsPeer, peerIdInAddr, serveMuxRpc } from '../net/index.ts';
import {
  type ApplyResult,
  type MasterStatus,
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
import { addrOf, DataPlane, type DataPlaneOptions, type Placement } from './data-plane.ts';
import type { RaftDriver } from './raft-driver.ts';

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
  /** Peers that may administer nodes (admit, drain, rm, scrub), besides the masters. */
  readonly adminPeers?: ReadonlySet<string>;
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

  constructor(options: MetaServiceOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = (options.logger ?? silentLogger).child({ component: 'meta' });
    this.#startedAt = this.#clock.now();
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
   * Answers one request from `from`, the Noise-authenticated peer that sent it: a storage node
   * speaks only for itself (heartbeat, report, registration under its own peer id); node state
   * changes come only from masters; a client's report of a bad copy is a request to verify it.
   */
  async handle(request: MetaRequest, from: RequestContext): Promise<MetaResponse> {
    try {
      this.#authorize(request, from);
      switch (request.type) {
        case 'status':
          return { ok: true, value: await this.status(request.withHash === true) };
        case 'write':
          return await this.#write(request);
        case 'stat':
          return await this.#read(request.stale === true, () => {
            const entry = this.#o.machine.state.stat(request.path);
            if (!entry) throw new DfsError('ERR_NOT_FOUND', `${request.path}: no such file or directory`);
            return entry;
          });
        case 'list':
          return await this.#read(request.stale === true, () =>
            this.#o.machine.state.list(request.path, { ...(request.after !== undefined ? { after: request.after } : {}), ...(request.limit !== undefined ? { limit: request.limit } : {}) }),
          );
        case 'heartbeat':
          return { ok: true, value: this.#heartbeat(request) };
        case 'nodes':
          return { ok: true, value: this.#nodeViews() };
        case 'rebalance': {
          const repair = this.#o.repair?.();
          this.#leaderPlane();
          if (!repair) throw new DfsError('ERR_NOT_LEADER', 'no repair task on this master');
          repair.requestRebalance(request.maxChunks);
          return { ok: true, value: {} };
        }
        case 'scrubNode':
          if (!this.#o.machine.state.node(request.nodeId)) throw new DfsError('ERR_NOT_FOUND', `no storage node ${request.nodeId} (see dfs nodes)`);
          this.#leaderPlane().nodes.requestScrub(request.nodeId);
          return { ok: true, value: {} };
        case 'report':
          this.#leaderPlane().report(request.nodeId, request.ids, request.first, request.last);
          return { ok: true, value: {} };
        case 'place':
          return { ok: true, value: this.#place(request.chunks, new Set(request.exclude ?? []), request.uploadId) };
        case 'locate':
          return { ok: true, value: this.#leaderPlane().locate(request.ids) };
        case 'proveStored': {
          const plane = this.#leaderPlane();
          // Proven chunks are promised to the upload: this leader may not know it yet.
          if (request.uploadId !== undefined) plane.uploads.promise(request.uploadId, request.acks.map((a) => a.id));
          await this.#recordProof(plane, request.acks);
          return { ok: true, value: {} };
        }
        case 'badReplica':
          // A claim about another peer: never believed as such. The node is asked to verify.
          this.#leaderPlane().requestVerify(request.nodeId, request.id);
          return { ok: true, value: {} };
      }
    } catch (err) {
      if (!isDfsError(err)) throw err;
      // Not-leader answers are routine (clients follow the hint); anything else is worth a line.
      const level = err.code === 'ERR_NOT_LEADER' ? 'debug' : 'info';
      this.#log[level]({ request: request.type, code: err.code, reason: err.message }, 'refused a request');
      return this.#refusal(err);
    }
  }

  /**
   * A node's heartbeat: its load and chunk changes are recorded; the answer carries its commands.
   * `fence`: a node that restarted refuses deletes decided before it (see FenceClock); `verify`:
   * chunks a client found bad there; `replicate`: copies to make (repair); `nodes`: the storage
   * nodes it may dial, when its list is out of date.
   */
  #heartbeat(request: Extract<MetaRequest, { type: 'heartbeat' }>): object {
    const plane = this.#leaderPlane();
    const registered = this.#o.machine.state.node(request.nodeId) !== undefined;
    // An unregistered peer is told to register, and nothing it says is recorded.
    if (!registered) return { registered, fullReportWanted: true, fence: plane.fences.peek(), verify: [], replicate: [] };
    const { fullReportWanted } = plane.heartbeat(request.nodeId, request, request.added, request.removed);
    if (request.replicated && request.replicated.length > 0) this.#o.repair?.()?.noteResults(request.nodeId, request.replicated);
    const nodes = plane.dialableNodes();
    const nodesVersion = versionOf(nodes);
    return {
      registered,
      fullReportWanted,
      fence: plane.fences.peek(),
      verify: plane.takeVerifyRequests(request.nodeId),
      replicate: plane.nodes.takeReplicate(request.nodeId, REPLICATE_PER_ANSWER),
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

  /** ERR_FORBIDDEN for a request `from` may not make (see handle). */
  #authorize(request: MetaRequest, from: RequestContext): void {
    const forbid = (why: string): never => {
      this.#log.warn({ request: request.type, peer: from.peerId, why }, 'refused a request from a peer');
      throw new DfsError('ERR_FORBIDDEN', why);
    };
    if ((request.type === 'heartbeat' || request.type === 'report') && request.nodeId !== from.peerId) {
      forbid(`peer ${from.peerId} may not speak for storage node ${request.nodeId}`);
    }
    // Only a registered node's word about its own chunks counts (not any peer's that heartbeats).
    if ((request.type === 'heartbeat' || request.type === 'report') && !this.#o.machine.state.node(from.peerId)) {
      if (request.type === 'report') forbid(`peer ${from.peerId} is not a registered storage node`);
    }
    const isAdmin = this.#o.masterAddrs.has(from.peerId) || this.#o.adminPeers?.has(from.peerId) === true;
    if ((request.type === 'scrubNode' || request.type === 'rebalance') && !isAdmin) forbid(`only the masters and the cluster's admin may ask for a ${request.type}; ${from.peerId} is neither`);
    if (request.type !== 'write') return;
    const cmd = request.cmd;
    if (cmd.op === 'registerNode') {
      if (cmd.nodeId !== from.peerId) forbid(`peer ${from.peerId} may register only itself, not ${cmd.nodeId}`);
      // An address naming another peer would send that peer's deletes and checks elsewhere.
      for (const addr of cmd.addrs) {
        const named = peerIdInAddr(addr);
        if (named !== undefined && named !== from.peerId) forbid(`node ${from.peerId} may not register an address of peer ${named} (${addr})`);
      }
    }
    if (cmd.op === 'setNodeState' && !this.#o.masterAddrs.has(from.peerId)) forbid(`only masters change a node's state; ${from.peerId} is not one`);
    if ((cmd.op === 'admitNode' || cmd.op === 'drainNode' || cmd.op === 'removeNode') && !isAdmin) {
      forbid(`only the masters and the cluster's admin identity may ${cmd.op.replace('Node', '')} nodes; ${from.peerId} is neither (see --admin-peers)`);
    }
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
      ...(withHash ? { stateHash: this.#o.machine.state.stateHash(await loadBlake3()) } : {}),
    };
  }

  #leaderPlane(): DataPlane {
    this.#followLeadership();
    if (!this.#dataPlane) throw new DfsError('ERR_NOT_LEADER', 'not the leader');
    return this.#dataPlane;
  }

  #place(chunks: ReadonlyArray<{ id: string; size: number }>, exclude: ReadonlySet<string>, uploadId: string | undefined): Placement[] {
    const plane = this.#leaderPlane();
    const rf = this.#o.machine.state.settings.replicationFactor;
    const placed = plane.place(chunks, exclude, uploadId);
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
    return placed;
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

  async #write(request: Extract<MetaRequest, { type: 'write' }>): Promise<MetaResponse> {
    if (this.#o.driver.role !== 'leader') return this.#refusal(new DfsError('ERR_NOT_LEADER', 'not the leader'));
    const cmd = this.#stamp(request.cmd, request.user ?? 'anonymous');
    if (request.cmd.op === 'admitNode' || request.cmd.op === 'drainNode' || request.cmd.op === 'removeNode') this.#checkNodeChange(request.cmd);
    // A commit's chunks are promised to it before anything is awaited: a GC round deciding now
    // calls them off, one deciding earlier is waited for (#checkCommit). Until the entry applies
    // (the references then protect them) or the commit is refused.
    const promise = cmd.op === 'commitFile' ? (request.uploadId ?? `commit:${request.clientId}:${request.seq}`) : undefined;
    if (cmd.op === 'commitFile') this.#leaderPlane().uploads.promise(promise!, cmd.manifest.chunks.map(([id]) => id));
    let result: ApplyResult | undefined;
    try {
      if (cmd.op === 'commitFile') {
        // A retry of a commit that already applied (its answer lost in a leader change) gets the
        // first answer, before any check that could only fail now (the new leader may not know
        // the chunks' holders yet). The barrier applies everything committed before it first.
        await this.#o.driver.readBarrier();
        const first = this.#o.machine.state.resultOf(request.clientId, request.seq);
        if (first) return first.ok ? { ok: true, value: first.value } : { ok: false, code: first.code, message: first.message };
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
    return result.ok ? { ok: true, value: result.value } : { ok: false, code: result.code, message: result.message };
  }

  /** The full command as the log records it: what the client asked plus owner and time. */
  #stamp(cmd: WriteCommand, user: string): MetaCommand {
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
