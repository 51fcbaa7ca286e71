import type { Entry, Snapshot } from './types.ts';

/**
 * Messages between Raft nodes: a tagged union on `type`. Every message carries the sender's
 * term (for responses to pre-votes: the term that was asked about). An installed snapshot is
 * acknowledged with an appendResp, as in etcd, so there is no separate snapshot response.
 */
interface Envelope {
  readonly from: string;
  readonly to: string;
  readonly term: number;
}

export interface VoteRequest extends Envelope {
  readonly type: 'preVote' | 'vote';
  readonly lastLogIndex: number;
  readonly lastLogTerm: number;
  /** Set when the campaign follows a leadership transfer: voters then ignore their leader lease. */
  readonly transfer: boolean;
}

export interface VoteResponse extends Envelope {
  readonly type: 'preVoteResp' | 'voteResp';
  readonly reject: boolean;
}

export interface AppendRequest extends Envelope {
  readonly type: 'append';
  readonly prevLogIndex: number;
  readonly prevLogTerm: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
}

export interface AppendResponse extends Envelope {
  readonly type: 'appendResp';
  readonly reject: boolean;
  /** Accepted: the last index now known to match. Rejected: the prevLogIndex that failed. */
  readonly index: number;
  /** Rejected only: the follower's guess of the highest index that may match (findConflictByTerm). */
  readonly rejectHint: number;
  /** Rejected only: the term of the follower's entry at rejectHint (0 if unknown). */
  readonly logTerm: number;
}

export interface Heartbeat extends Envelope {
  readonly type: 'heartbeat';
  readonly commit: number;
  /** The newest pending ReadIndex context, echoed back so the leader can count the quorum. */
  readonly context: string | null;
}

export interface HeartbeatResponse extends Envelope {
  readonly type: 'heartbeatResp';
  readonly context: string | null;
}

export interface InstallSnapshot extends Envelope {
  readonly type: 'installSnapshot';
  readonly snapshot: Snapshot;
}

export interface TimeoutNow extends Envelope {
  readonly type: 'timeoutNow';
}

export type Message =
  | VoteRequest
  | VoteResponse
  | AppendRequest
  | AppendResponse
  | Heartbeat
  | HeartbeatResponse
  | InstallSnapshot
  | TimeoutNow;

export type MessageType = Message['type'];

export const MESSAGE_TYPES: readonly MessageType[] = [
  'preVote',
  'preVoteResp',
  'vote',
  'voteResp',
  'append',
  'appendResp',
  'heartbeat',
  'heartbeatResp',
  'installSnapshot',
  'timeoutNow',
];
