/**
 * The Raft consensus core of the metadata masters: a pure, deterministic state machine after
 * etcd's raft/rawnode and the Raft thesis (Ongaro 2014). It does no I/O, reads no clock and
 * draws randomness only from the injected `rng` (for the election timeout).
 *
 * Features: PreVote, CheckQuorum (with leader lease on votes), heartbeats, log replication with
 * the conflict-term hint and etcd-style flow control (probe / replicate / snapshot, at most
 * maxInflightMsgs appends in flight, maxSizePerMsgBytes per append), commit by counting only
 * for current-term entries (§5.4.2), snapshots and log compaction with InstallSnapshot,
 * single-server membership changes with learners (the thesis errata fix: a new leader commits
 * an entry of its own term before any change), lease-free ReadIndex (thesis 6.4) and
 * leadership transfer with TimeoutNow.
 *
 * Starting a node:
 *   RaftNode.bootstrap(options, { voters, learners })  founding member of a new cluster
 *   RaftNode.join(options)                             a server about to be added (empty config)
 *   RaftNode.restart(options, { hardState, snapshot, entries })  after a crash, exactly as persisted
 *
 * Driving it (single-threaded loop):
 *   node.tick()                 every tick of your clock (heartbeatTicks / electionTicks are in ticks)
 *   node.step(message)          each message from a peer (decode with decodeMessage first)
 *   node.propose(data)          on the leader; elsewhere { ok: false, reason: 'not_leader', leaderHint }
 *   node.proposeConfChange({ type: 'addLearner' | 'addVoter' | 'removeNode', id })
 *   node.readIndex(context)     linearizable read; a ReadState with this context comes out later
 *                               (context: at most MAX_READ_CONTEXT_LENGTH chars, local only, reusable
 *                               once its ReadState came out)
 *   node.transferLeadership(id)
 *   node.compact(index, data)   after applying up to index: snapshot the state machine
 *   if (node.hasReady()) { const rd = node.ready(); ...; node.advance(); }
 * Expected refusals are typed results ({ ok: false, reason }), never exceptions. Bad input from
 * peers never throws: it is dropped and counted in node.stats.droppedMessages by reason
 * (responses from non-members, stale terms, impossible indexes, ...). Requests (votes, appends,
 * heartbeats, snapshots, timeoutNow) are taken from any sender: a lagging node's configuration
 * may not yet contain a newly added leader, and terms and log checks keep them safe. The
 * network adapter should still authenticate peers and run decodeMessage (shape checks) first.
 * An installed snapshot is acknowledged with an appendResp (as in etcd); there is no snapshotResp.
 * Misuse of the API by the caller (ready() twice, input between ready() and advance(), a
 * corrupt restart state) throws RaftInvariantError; invalid options throw DfsError.
 *
 * The Ready contract, in this order for each Ready:
 *   1. Persist, durably (fsync), as one atomic step:
 *        rd.snapshot  if not null: replaces the persisted snapshot and ALL persisted entries;
 *        rd.entries   append, first discarding persisted entries with index >= rd.entries[0].index;
 *        rd.hardState if not null: replaces the persisted hard state.
 *   2. Send rd.messages. They may depend on step 1 (votes, acknowledgements), so never send
 *      them before it. A message may be lost: Raft retries on its own.
 *   3. If rd.snapshot is not null, restore the state machine from rd.snapshot.data (empty data at
 *      index 0 means an empty state machine), then apply rd.committedEntries in order. 'config'
 *      entries need no action from the application: the core already switched configuration.
 *   4. Serve rd.readStates: each read may run now that committedEntries are applied.
 *   5. Call node.advance(). No other call to the node is allowed between ready() and advance().
 * Restart input is the persisted { hardState, snapshot, entries }; a crash anywhere in 1-5 is
 * safe. compact(index, data) returns the snapshot for the caller to persist itself; only after
 * that may it discard persisted entries up to index. A leader's proposals made between two
 * ready() calls leave in one append per follower (batching).
 */
export { RaftNode } from './node.ts';
export type { Ready, NodeStatus, ProgressStatus } from './node.ts';
export type { RaftOptions } from './options.ts';
export type {
  Entry,
  EntryType,
  HardState,
  Configuration,
  ConfChange,
  ConfChangeType,
  ConfigEntry,
  Snapshot,
  SnapshotMetadata,
  ReadState,
  RoleName,
  SoftState,
  PersistedState,
  Refusal,
  RefusalReason,
  ProposeResult,
  ReadIndexResult,
  TransferResult,
  CompactResult,
} from './types.ts';
export type {
  Message,
  MessageType,
  VoteRequest,
  VoteResponse,
  AppendRequest,
  AppendResponse,
  Heartbeat,
  HeartbeatResponse,
  InstallSnapshot,
  TimeoutNow,
} from './messages.ts';
export { MESSAGE_TYPES } from './messages.ts';
export {
  validateMessage,
  encodeMessage,
  decodeMessage,
  encodeConfigEntry,
  decodeConfigEntry,
  validateConfiguration,
  MAX_READ_CONTEXT_LENGTH,
} from './codec.ts';
export { applyConfChange, isVoter, isLearner, isMember, quorumSize, MAX_ID_LENGTH } from './config.ts';
export { DROP_REASONS } from './stats.ts';
export type { DropReason, RaftStats } from './stats.ts';
export { RaftInvariantError } from './invariant.ts';
export { seededRng } from './rng.ts';
