import type { Message, RaftNode } from '../src/raft/index.ts';
import { RaftNode as Node, seededRng } from '../src/raft/index.ts';

/**
 * The Raft core alone: a 3-server in-memory cluster, no I/O. Messages are delivered directly in
 * the same loop, "persisting" is free, and proposals come in batches (all proposals between two
 * ready() calls leave in one append per follower). An entry counts once it is applied on all
 * three servers. The target is >= 200,000 entries/s, so that consensus is never the bottleneck.
 */

const IDS = ['m1', 'm2', 'm3'];
const PAYLOAD_BYTES = 128;
const COMPACT_EVERY = 50_000;

interface BenchCase {
  readonly batch: number;
  readonly entries: number;
}

const CASES: readonly BenchCase[] = [
  { batch: 1, entries: 20_000 },
  { batch: 16, entries: 200_000 },
  { batch: 256, entries: 500_000 },
  { batch: 1024, entries: 500_000 },
];

interface Cluster {
  readonly nodes: Map<string, RaftNode>;
  readonly applied: Map<string, number>;
}

function createCluster(): Cluster {
  const nodes = new Map<string, RaftNode>();
  const applied = new Map<string, number>();
  IDS.forEach((id, k) => {
    const node = Node.bootstrap(
      { id, electionTicks: 10, heartbeatTicks: 1, rng: seededRng(k + 1), maxInflightMsgs: 256, maxSizePerMsgBytes: 1024 * 1024, maxUncommittedEntries: 1_000_000 },
      { voters: IDS, learners: [] },
    );
    nodes.set(id, node);
    applied.set(id, 0);
  });
  return { nodes, applied };
}

/** Runs Ready loops and delivers messages until the cluster is quiet (bounded); returns messages delivered. */
function pump(cluster: Cluster): number {
  let delivered = 0;
  let queue: Message[] = [];
  for (let round = 0; round < 100_000; round++) {
    for (const node of cluster.nodes.values()) {
      if (!node.hasReady()) continue;
      const rd = node.ready();
      for (const m of rd.messages) queue.push(m);
      const last = rd.committedEntries[rd.committedEntries.length - 1];
      if (last !== undefined) cluster.applied.set(node.id, last.index);
      node.advance();
    }
    if (queue.length === 0) return delivered;
    delivered += queue.length;
    const delivering = queue;
    queue = [];
    for (const m of delivering) cluster.nodes.get(m.to)!.step(m);
  }
  throw new Error('bench cluster did not settle');
}

function electLeader(cluster: Cluster): RaftNode {
  const first = cluster.nodes.get(IDS[0]!)!;
  for (let k = 0; k < 100; k++) {
    first.tick();
    pump(cluster);
    if (first.status().role === 'leader') return first;
  }
  throw new Error('no leader');
}

function minApplied(cluster: Cluster): number {
  return Math.min(...cluster.applied.values());
}

function runCase(c: BenchCase): { entriesPerSec: number; ms: number; messagesPerEntry: number } {
  const cluster = createCluster();
  const leader = electLeader(cluster);
  const payload = new Uint8Array(PAYLOAD_BYTES).fill(7);
  const startApplied = minApplied(cluster);
  let lastCompact = startApplied;
  let messages = 0;
  const start = performance.now();
  for (let proposed = 0; proposed < c.entries; ) {
    for (let k = 0; k < c.batch; k++) {
      if (!leader.propose(payload).ok) throw new Error('proposal refused');
    }
    proposed += c.batch;
    messages += pump(cluster);
    const done = minApplied(cluster);
    if (done - lastCompact >= COMPACT_EVERY) {
      for (const node of cluster.nodes.values()) node.compact(cluster.applied.get(node.id)!, payload);
      lastCompact = done;
    }
  }
  const ms = performance.now() - start;
  const applied = minApplied(cluster) - startApplied;
  if (applied < c.entries) throw new Error(`only ${applied} of ${c.entries} entries applied everywhere`);
  return { entriesPerSec: (applied / ms) * 1000, ms, messagesPerEntry: messages / applied };
}

export async function runRaftBench(): Promise<void> {
  console.log(`raft core: 3 servers in memory, ${PAYLOAD_BYTES}-byte entries, maxInflightMsgs 256, maxSizePerMsgBytes 1 MiB`);
  console.log('batch  entries  time (ms)  messages/entry  committed+applied on all 3 (entries/s)');
  // One short warm-up so the JIT does not count against the first case.
  runCase({ batch: 256, entries: 50_000 });
  for (const c of CASES) {
    const r = runCase(c);
    console.log(
      `${String(c.batch).padStart(5)}  ${String(c.entries).padStart(7)}  ${r.ms.toFixed(0).padStart(9)}  ${r.messagesPerEntry.toFixed(3).padStart(14)}  ${Math.round(r.entriesPerSec).toLocaleString('en-US').padStart(12)}`,
    );
  }
}
