import { Rng } from './rng.ts';

/**
 * The fault schedule: made up front from the seed alone (so the same seed replays it), then run
 * in real time by faults.ts. Two lanes run side by side, each one fault at a time:
 * - masters: at most one master is down, paused or cut off at once; the leader is the usual target;
 * - nodes: at most two nodes are down at once, and after a two-node fault the lane waits for repair.
 * Targets that only exist at run time (the leader, a chunk file, a put's pipeline) are chosen
 * then, from `pick`, a seeded number.
 */
export const MASTER_FAULTS = {
  'kill-leader': 4,
  'kill-follower': 1,
  'pause-leader': 3,
  'pause-follower': 1,
  'isolate-leader': 2,
  'isolate-follower': 1,
  'oneway-leader-out': 1,
  'oneway-leader-in': 1,
  'split-leader-minority': 1,
} as const;

export const NODE_FAULTS = {
  'kill-node': 3,
  'kill-two-nodes': 1,
  'kill-mid-put': 2,
  'kill-during-repair': 1,
  'pause-node': 1,
  'corrupt-chunk': 2,
  'delete-chunk': 1,
  'fill-disk': 1,
  'isolate-node': 1,
  'oneway-node-out': 1,
  'split-nodes': 1,
} as const;

export type MasterFault = keyof typeof MASTER_FAULTS;
export type NodeFault = keyof typeof NODE_FAULTS;
export type FaultKind = MasterFault | NodeFault;
export type Lane = 'masters' | 'nodes';

export interface FaultStep {
  readonly id: number;
  readonly lane: Lane;
  readonly kind: FaultKind;
  /** Planned start, from the start of the load phase; a lane never starts a fault before the last one healed. */
  readonly atMs: number;
  /** How long the fault lasts before the harness heals it (0: a one-off, such as a corrupted file). */
  readonly holdMs: number;
  /** Storage nodes chosen up front (node lane): the target, or the two targets. */
  readonly nodes: readonly string[];
  /** A seeded number for choices made at run time. */
  readonly pick: number;
}

export interface ScheduleOptions {
  readonly seed: number;
  readonly durationMs: number;
  readonly nodeNames: readonly string[];
  /** The node whose data directory is a small disk (fill-disk targets it). */
  readonly smallDiskNode: string;
  readonly suspectAfterMs: number;
  readonly deadAfterMs: number;
}

/** What a fault needs from the machine; without it, it is skipped (and said so). */
export function requirementOf(kind: FaultKind): 'firewall' | 'small disk' | undefined {
  if (kind.startsWith('isolate-') || kind.startsWith('oneway-') || kind.startsWith('split-')) return 'firewall';
  if (kind === 'fill-disk') return 'small disk';
  return undefined;
}

/** No new fault starts in the last few seconds of the load phase. */
const QUIET_TAIL_MS = 5_000;

export function makeSchedule(o: ScheduleOptions): FaultStep[] {
  const steps: FaultStep[] = [];
  const lanes: Array<[Lane, Rng]> = [
    ['masters', Rng.derive(o.seed, 1)],
    ['nodes', Rng.derive(o.seed, 2)],
  ];
  for (const [lane, rng] of lanes) {
    let t = lane === 'masters' ? rng.int(3_000, 7_000) : rng.int(5_000, 9_000);
    while (t < o.durationMs - QUIET_TAIL_MS) {
      const step = lane === 'masters' ? masterStep(rng, t) : nodeStep(rng, t, o);
      steps.push({ ...step, id: 0 });
      // A restart takes a second or two, a two-node fault waits for repair: leave room for it.
      const overhead = step.kind.startsWith('kill-') ? 2_000 : 500;
      const repairWait = step.kind === 'kill-two-nodes' || step.kind === 'kill-during-repair' ? o.deadAfterMs : 0;
      t += step.holdMs + overhead + repairWait + rng.int(2_000, lane === 'masters' ? 8_000 : 6_000);
    }
  }
  return steps.sort((a, b) => a.atMs - b.atMs).map((s, id) => ({ ...s, id }));
}

function masterStep(rng: Rng, atMs: number): Omit<FaultStep, 'id'> {
  const kind = rng.weighted(MASTER_FAULTS);
  let holdMs: number;
  if (kind.startsWith('kill-')) holdMs = rng.int(1_000, 8_000);
  else if (kind.startsWith('pause-')) holdMs = rng.int(1_500, 8_000);
  else holdMs = rng.int(3_000, 10_000);
  return { lane: 'masters', kind, atMs, holdMs, nodes: [], pick: rng.u32() };
}

function nodeStep(rng: Rng, atMs: number, o: ScheduleOptions): Omit<FaultStep, 'id'> {
  const kind = rng.weighted(NODE_FAULTS);
  const pick = rng.u32();
  const one = () => [rng.pick(o.nodeNames)];
  const two = () => rng.sample(o.nodeNames, 2);
  // Below suspicion, suspect but not dead, or dead long enough for repair to start.
  const killHold = () => {
    const band = rng.weighted({ short: 35, suspect: 35, dead: 30 });
    if (band === 'short') return rng.int(500, Math.max(600, o.suspectAfterMs - 500));
    if (band === 'suspect') return rng.int(o.suspectAfterMs + 500, Math.max(o.suspectAfterMs + 600, o.deadAfterMs - 1_000));
    return rng.int(o.deadAfterMs + 1_000, o.deadAfterMs + 5_000);
  };
  switch (kind) {
    case 'kill-node':
      return { lane: 'nodes', kind, atMs, holdMs: killHold(), nodes: one(), pick };
    case 'kill-two-nodes':
      return { lane: 'nodes', kind, atMs, holdMs: rng.int(o.deadAfterMs + 1_000, o.deadAfterMs + 4_000), nodes: two(), pick };
    case 'kill-mid-put':
      return { lane: 'nodes', kind, atMs, holdMs: rng.int(1_000, 6_000), nodes: one(), pick };
    case 'kill-during-repair':
      // The first node stays down until repair is seen; then the second dies for holdMs.
      return { lane: 'nodes', kind, atMs, holdMs: rng.int(2_000, 5_000), nodes: two(), pick };
    case 'pause-node':
      return { lane: 'nodes', kind, atMs, holdMs: rng.int(1_000, 8_000), nodes: one(), pick };
    case 'corrupt-chunk':
    case 'delete-chunk':
      return { lane: 'nodes', kind, atMs, holdMs: 0, nodes: one(), pick };
    case 'fill-disk':
      return { lane: 'nodes', kind, atMs, holdMs: rng.int(5_000, 15_000), nodes: [o.smallDiskNode], pick };
    case 'isolate-node':
    case 'oneway-node-out':
      return { lane: 'nodes', kind, atMs, holdMs: rng.int(2_000, o.deadAfterMs + 3_000), nodes: one(), pick };
    case 'split-nodes':
      return { lane: 'nodes', kind, atMs, holdMs: rng.int(3_000, 10_000), nodes: two(), pick };
  }
}

export function describeStep(s: FaultStep): string {
  const targets = s.nodes.length > 0 ? ` ${s.nodes.join('+')}` : '';
  return `#${s.id} ${s.kind}${targets} at ${(s.atMs / 1000).toFixed(1)} s${s.holdMs > 0 ? `, ${(s.holdMs / 1000).toFixed(1)} s` : ''}`;
}
