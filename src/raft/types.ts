/**
 * Plain data shared by the Raft core, its I/O adapter and the simulator. Everything here is
 * JSON-shaped except the opaque `Uint8Array` payloads, which the codec turns into base64.
 */

export type EntryType = 'normal' | 'config';

/** One log entry. `data` is opaque for 'normal' entries; 'config' entries hold an encoded ConfigEntry. */
export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** What must survive a crash besides the log: written before any message of the same Ready is sent. */
export interface HardState {
  readonly term: number;
  /** The node voted for in `term`, or null. */
  readonly vote: string | null;
  readonly commit: number;
}

export interface Configuration {
  readonly voters: readonly string[];
  readonly learners: readonly string[];
}

export type ConfChangeType = 'addVoter' | 'addLearner' | 'removeNode';

export interface ConfChange {
  readonly type: ConfChangeType;
  readonly id: string;
}

/**
 * The payload of a 'config' entry: the change and the full configuration that results from it.
 * Carrying the full configuration makes every config entry self-contained, so a node that joins
 * with an empty log learns the membership from the first config entry it sees.
 */
export interface ConfigEntry {
  readonly change: ConfChange;
  readonly config: Configuration;
}

export interface SnapshotMetadata {
  readonly index: number;
  readonly term: number;
  /** The configuration in force at `index`. */
  readonly config: Configuration;
}

export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  /** Opaque to the core: the application's state machine at `metadata.index`. */
  readonly data: Uint8Array;
}

/** A linearizable read may be served once the application has applied up to `index`. */
export interface ReadState {
  readonly index: number;
  readonly context: string;
}

export type RoleName = 'follower' | 'preCandidate' | 'candidate' | 'leader';

export interface SoftState {
  readonly role: RoleName;
  readonly leaderId: string | null;
}

/** Durable state handed back to RaftNode.restart exactly as earlier Ready()s asked to persist it. */
export interface PersistedState {
  readonly hardState: HardState;
  readonly snapshot?: Snapshot | null;
  /** Entries after the snapshot, contiguous and in index order. */
  readonly entries: readonly Entry[];
}

/** Typed refusals of the proposal-like calls; callers retry or redirect, nothing is thrown. */
export type Refusal =
  | { readonly ok: false; readonly reason: 'not_leader'; readonly leaderHint: string | null }
  | { readonly ok: false; readonly reason: 'transfer_in_progress' }
  | { readonly ok: false; readonly reason: 'too_many_uncommitted_entries' }
  | { readonly ok: false; readonly reason: 'config_change_pending' }
  | { readonly ok: false; readonly reason: 'no_commit_in_term' }
  | { readonly ok: false; readonly reason: 'already_member' }
  | { readonly ok: false; readonly reason: 'not_a_member' }
  | { readonly ok: false; readonly reason: 'not_a_learner' }
  | { readonly ok: false; readonly reason: 'learner_not_caught_up' }
  | { readonly ok: false; readonly reason: 'would_remove_last_voter' }
  | { readonly ok: false; readonly reason: 'not_a_voter' }
  | { readonly ok: false; readonly reason: 'already_leader' }
  | { readonly ok: false; readonly reason: 'too_many_pending_reads' }
  | { readonly ok: false; readonly reason: 'duplicate_read_context' }
  | { readonly ok: false; readonly reason: 'invalid_argument'; readonly detail: string };

export type RefusalReason = Refusal['reason'];

export type ProposeResult = { readonly ok: true; readonly index: number; readonly term: number } | Refusal;
export type ReadIndexResult = { readonly ok: true } | Refusal;
export type TransferResult = { readonly ok: true } | Refusal;
export type CompactResult = { readonly ok: true; readonly snapshot: Snapshot } | Refusal;
