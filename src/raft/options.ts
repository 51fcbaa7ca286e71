import { DfsError } from '../errors/index.ts';
import { MAX_ID_LENGTH } from './config.ts';

/** Tuning of one Raft node. Ticks are the caller's clock: tick() is called every tick. */
export interface RaftOptions {
  readonly id: string;
  /** Base election timeout; each node waits a random [electionTicks, 2*electionTicks) ticks. */
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  /** Uniform in [0, 1); used only to randomize the election timeout. */
  readonly rng: () => number;
  readonly preVote?: boolean;
  readonly checkQuorum?: boolean;
  /** Payload bytes per append message (at least one entry is always sent). */
  readonly maxSizePerMsgBytes?: number;
  /** Append messages in flight per follower in the replicate state. */
  readonly maxInflightMsgs?: number;
  /** Proposals are refused while this many entries are appended but uncommitted. */
  readonly maxUncommittedEntries?: number;
  readonly maxPendingReads?: number;
  /** Payload bytes of committed entries handed out per Ready (at least one entry). */
  readonly maxApplyBytesPerReady?: number;
  /** Outgoing messages kept between two Ready()s; beyond that new messages are dropped. */
  readonly maxOutboxMsgs?: number;
}

export interface ResolvedOptions {
  readonly id: string;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly rng: () => number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly maxSizePerMsgBytes: number;
  readonly maxInflightMsgs: number;
  readonly maxUncommittedEntries: number;
  readonly maxPendingReads: number;
  readonly maxApplyBytesPerReady: number;
  readonly maxOutboxMsgs: number;
}

function positiveInt(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `raft option ${name} must be a positive integer, got ${value}`);
  }
  return value;
}

export function resolveOptions(options: RaftOptions): ResolvedOptions {
  if (typeof options.id !== 'string' || options.id.length === 0 || options.id.length > MAX_ID_LENGTH) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `raft option id must be a non-empty string of at most ${MAX_ID_LENGTH} characters`);
  }
  if (typeof options.rng !== 'function') throw new DfsError('ERR_INVALID_ARGUMENT', 'raft option rng must be a function');
  const electionTicks = positiveInt('electionTicks', options.electionTicks);
  const heartbeatTicks = positiveInt('heartbeatTicks', options.heartbeatTicks);
  if (heartbeatTicks >= electionTicks) {
    throw new DfsError('ERR_INVALID_ARGUMENT', 'raft option heartbeatTicks must be below electionTicks');
  }
  return {
    id: options.id,
    electionTicks,
    heartbeatTicks,
    rng: options.rng,
    preVote: options.preVote ?? true,
    checkQuorum: options.checkQuorum ?? true,
    maxSizePerMsgBytes: positiveInt('maxSizePerMsgBytes', options.maxSizePerMsgBytes ?? 1024 * 1024),
    maxInflightMsgs: positiveInt('maxInflightMsgs', options.maxInflightMsgs ?? 256),
    maxUncommittedEntries: positiveInt('maxUncommittedEntries', options.maxUncommittedEntries ?? 100_000),
    maxPendingReads: positiveInt('maxPendingReads', options.maxPendingReads ?? 1024),
    maxApplyBytesPerReady: positiveInt('maxApplyBytesPerReady', options.maxApplyBytesPerReady ?? 64 * 1024 * 1024),
    maxOutboxMsgs: positiveInt('maxOutboxMsgs', options.maxOutboxMsgs ?? 100_000),
  };
}
