import { Gauge, type Registry } from 'prom-client';
import type { MasterStatus, NodeView } from '../meta/index.ts';
import { NODE_STATES } from '../meta/index.ts';

/** What a master's metrics are read from at each scrape. */
export interface MasterMetricsSource {
  status(): Promise<MasterStatus>;
  /** The storage nodes as the leader sees them; undefined on a follower. */
  nodes(): Promise<readonly NodeView[] | undefined>;
}

/** How long one reading serves the gauges of a scrape (they are collected one by one). */
const READING_TTL_MS = 500;

/**
 * Registers a master's gauges: Raft (term, indexes, apply lag, follower lag, leadership), chunk
 * health and repair (leader only), and each storage node's space and state (leader only). All are
 * read at scrape time from the master's own status, so they cost nothing between scrapes.
 */
export function registerMasterMetrics(registry: Registry, source: MasterMetricsSource, now: () => number = Date.now): void {
  let cached: { at: number; reading: Promise<{ status: MasterStatus; nodes: readonly NodeView[] | undefined }> } | undefined;
  const read = () => {
    if (!cached || now() - cached.at > READING_TTL_MS) {
      const reading = Promise.all([source.status(), source.nodes()]).then(([status, nodes]) => ({ status, nodes }));
      // A failed reading is not kept: the next gauge (or scrape) asks again.
      // Only this reading's own entry: an older failure must not drop a newer reading.
      reading.catch(() => {
        if (cached?.reading === reading) cached = undefined;
      });
      cached = { at: now(), reading };
    }
    return cached.reading;
  };
  const gauge = (name: string, help: string, labelNames: readonly string[], fill: (g: Gauge, r: Awaited<ReturnType<typeof read>>) => void): void => {
    new Gauge({
      name,
      help,
      labelNames: [...labelNames],
      registers: [registry],
      async collect() {
        this.reset();
        fill(this, await read());
      },
    });
  };

  gauge('dfs_raft_term', 'Current Raft term of this master.', [], (g, { status }) => g.set(status.term));
  gauge('dfs_raft_is_leader', '1 on the Raft leader, 0 elsewhere.', [], (g, { status }) => g.set(status.role === 'leader' ? 1 : 0));
  gauge('dfs_raft_commit_index', 'Highest log index known committed.', [], (g, { status }) => g.set(status.commitIndex));
  gauge('dfs_raft_applied_index', 'Highest log index applied to the metadata state.', [], (g, { status }) => g.set(status.appliedIndex));
  gauge('dfs_raft_last_index', 'Last index in this master\'s log.', [], (g, { status }) => g.set(status.lastIndex));
  gauge('dfs_raft_apply_lag_entries', 'Committed entries not yet applied here.', [], (g, { status }) => g.set(Math.max(0, status.commitIndex - status.appliedIndex)));
  gauge('dfs_raft_follower_lag_entries', 'On the leader: entries each follower lacks.', ['follower'], (g, { status }) => {
    for (const [follower, lag] of Object.entries(status.followerLag ?? {})) g.set({ follower }, lag);
  });
  gauge('dfs_raft_elections_started', 'Elections this master started since it started.', [], (g, { status }) => g.set(status.raft.electionsStarted));
  gauge('dfs_meta_files', 'Files in the namespace.', [], (g, { status }) => g.set(status.counts.files));
  gauge('dfs_meta_entries', 'Files and directories in the namespace.', [], (g, { status }) => g.set(status.counts.entries));

  const chunks = (key: keyof NonNullable<MasterStatus['chunks']>) => (g: Gauge, { status }: Awaited<ReturnType<typeof read>>) => {
    const value = status.chunks?.[key];
    if (typeof value === 'number') g.set(value);
  };
  gauge('dfs_chunks_referenced', 'On the leader: chunks the committed files reference.', [], chunks('total'));
  gauge('dfs_chunks_under_replicated', 'On the leader: referenced chunks with fewer copies than the replication factor.', [], chunks('underReplicated'));
  gauge('dfs_chunks_missing', 'On the leader: referenced chunks no node is known to hold.', [], chunks('missing'));
  gauge('dfs_repair_in_flight', 'On the leader: copies being made now (the repair queue).', [], chunks('repairing'));
  gauge('dfs_repair_copies_made', 'On the leader: copies this leader has made.', [], chunks('repaired'));
  gauge('dfs_repair_copies_per_second', 'On the leader: copies a second over the last minute.', [], chunks('copiesPerSecond'));

  const perNode = (pick: (n: NodeView) => number) => (g: Gauge, { nodes }: Awaited<ReturnType<typeof read>>) => {
    for (const n of nodes ?? []) g.set({ node: n.name ?? n.id }, pick(n));
  };
  gauge('dfs_node_free_bytes', 'On the leader: free space each storage node reports.', ['node'], perNode((n) => n.freeBytes));
  gauge('dfs_node_used_bytes', 'On the leader: space each storage node uses for chunks.', ['node'], perNode((n) => n.usedBytes));
  gauge('dfs_node_capacity_bytes', 'On the leader: each storage node\'s capacity.', ['node'], perNode((n) => n.capacityBytes));
  gauge('dfs_node_chunks', 'On the leader: chunks each storage node holds.', ['node'], perNode((n) => n.chunks));
  gauge('dfs_node_heartbeat_age_seconds', 'On the leader: seconds since each node was last heard.', ['node'], (g, { nodes }) => {
    for (const n of nodes ?? []) if (n.heartbeatAgeMs !== null) g.set({ node: n.name ?? n.id }, n.heartbeatAgeMs / 1000);
  });
  gauge('dfs_node_state', 'On the leader: 1 for each storage node\'s current state.', ['node', 'state'], (g, { nodes }) => {
    for (const n of nodes ?? []) for (const state of NODE_STATES) g.set({ node: n.name ?? n.id, state }, n.state === state ? 1 : 0);
  });
}
