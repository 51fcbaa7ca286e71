import { loadBlake3 } from '../chunker/index.ts';
import { DfsError, isDfsError } from '../errors/index.ts';
import { type DfsPeer, serveRpc } from '../net/index.ts';
import {
  type ApplyResult,
  type MasterStatus,
  META_PROTOCOL,
  type MetaCommand,
  type MetaRequest,
  type MetaResponse,
  metaRequestSchema,
  validateManifest,
  type WriteCommand,
} from '../meta/index.ts';
import { encodeEnvelope, type MetaMachine } from './meta-machine.ts';
import type { RaftDriver } from './raft-driver.ts';

export interface MetaServiceOptions {
  readonly name: string;
  readonly peer: DfsPeer;
  readonly driver: RaftDriver;
  readonly machine: MetaMachine;
  /** Every master's peer id → address, to turn a leader id into somewhere a client can go. */
  readonly masterAddrs: ReadonlyMap<string, string>;
  readonly now?: () => number;
}

/**
 * Serves `/dfs/meta/1.0.0` on a master: writes are proposed through Raft on the leader (stamped
 * with owner and time, so apply stays deterministic), reads are served after a ReadIndex barrier
 * on the leader or straight from local state when the client accepts stale data.
 */
export class MetaService {
  readonly #o: MetaServiceOptions;
  readonly #startedAt: number;

  constructor(options: MetaServiceOptions) {
    this.#o = options;
    this.#startedAt = (options.now ?? Date.now)();
  }

  async start(): Promise<void> {
    await serveRpc(this.#o.peer, META_PROTOCOL, metaRequestSchema, (request) => this.handle(request), {
      maxInboundStreams: 256,
      handlerTimeoutMs: 15_000,
    });
  }

  async handle(request: MetaRequest): Promise<MetaResponse> {
    try {
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
      }
    } catch (err) {
      if (isDfsError(err)) return this.#refusal(err);
      throw err;
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
      counts: { entries: counts.entries, files: counts.files, nodes: counts.nodes },
      uptimeMs: (this.#o.now ?? Date.now)() - this.#startedAt,
      raft: { electionsStarted: d.stats.electionsStarted, becameLeader: d.stats.becameLeader, snapshotsSent: d.stats.snapshotsSent, snapshotsRestored: d.stats.snapshotsRestored },
      ...(withHash ? { stateHash: this.#o.machine.state.stateHash(await loadBlake3()) } : {}),
    };
  }

  async #write(request: Extract<MetaRequest, { type: 'write' }>): Promise<MetaResponse> {
    if (this.#o.driver.role !== 'leader') return this.#refusal(new DfsError('ERR_NOT_LEADER', 'not the leader'));
    const cmd = this.#stamp(request.cmd, request.user ?? 'anonymous');
    const result = (await this.#o.driver.propose(encodeEnvelope({ clientId: request.clientId, seq: request.seq, cmd }))) as ApplyResult;
    return result.ok ? { ok: true, value: result.value } : { ok: false, code: result.code, message: result.message };
  }

  /** The full command as the log records it: what the client asked plus owner and time. */
  #stamp(cmd: WriteCommand, user: string): MetaCommand {
    const nowMs = (this.#o.now ?? Date.now)();
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
        return { op: 'registerNode', nodeId: cmd.nodeId, addrs: cmd.addrs, capacityBytes: cmd.capacityBytes, nowMs };
      case 'setNodeState':
        return { op: 'setNodeState', nodeId: cmd.nodeId, state: cmd.state, nowMs };
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
