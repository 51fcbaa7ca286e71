/** Why an incoming message was dropped. Each reason has a counter in RaftStats.droppedMessages. */
export const DROP_REASONS = [
  'wrong_recipient',
  'unknown_peer',
  'stale_term',
  'unexpected_for_role',
  'stale_response',
  'impossible_index',
  'conflict_with_committed',
  'commit_beyond_log',
  'in_lease',
] as const;

export type DropReason = (typeof DROP_REASONS)[number];

export interface RaftStats {
  readonly droppedMessages: Record<DropReason, number>;
  /** Outgoing messages dropped because the outbox was full (the caller did not drain ready()). */
  droppedOutgoing: number;
  electionsStarted: number;
  preVotesStarted: number;
  becameLeader: number;
  snapshotsSent: number;
  snapshotsRestored: number;
  checkQuorumStepDowns: number;
  transfersAborted: number;
}

export function emptyStats(): RaftStats {
  const droppedMessages = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
  return {
    droppedMessages,
    droppedOutgoing: 0,
    electionsStarted: 0,
    preVotesStarted: 0,
    becameLeader: 0,
    snapshotsSent: 0,
    snapshotsRestored: 0,
    checkQuorumStepDowns: 0,
    transfersAborted: 0,
  };
}
