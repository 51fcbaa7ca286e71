import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ChunkRequest } from '../protocol/chunk-protocol.ts';
import type { ChunkStoreStats } from '../storage/index.ts';

/** What the node's request handling reports, one call per request (ChunkServiceOptions.observe). */
export interface ChunkOpObserver {
  /** `outcome`: 'ok' or the error code it answered; `bytes`: payload moved; `seconds`: request to answer. */
  observe(op: ChunkRequest['op'], outcome: string, bytes: number, seconds: number): void;
}

/**
 * A storage node's metrics: requests by operation and outcome, bytes moved, latency, and its
 * store's space and chunk count (read from the store at scrape time).
 */
export function registerNodeMetrics(registry: Registry, source: { stats(): Promise<ChunkStoreStats> }): ChunkOpObserver {
  const requests = new Counter({ name: 'dfs_chunk_requests_total', help: 'Chunk requests served, by operation and outcome (ok or an error code).', labelNames: ['op', 'outcome'], registers: [registry] });
  const moved = new Counter({ name: 'dfs_chunk_bytes_total', help: 'Chunk payload bytes received (put) or sent (get).', labelNames: ['op'], registers: [registry] });
  const latency = new Histogram({
    name: 'dfs_chunk_request_seconds',
    help: 'Time from a chunk request to its answer (a put: until every pipeline target fsynced).',
    labelNames: ['op'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  let cached: { at: number; stats: Promise<ChunkStoreStats> } | undefined;
  const read = () => {
    if (!cached || Date.now() - cached.at > 500) cached = { at: Date.now(), stats: source.stats() };
    return cached.stats;
  };
  const storeGauge = (name: string, help: string, pick: (s: ChunkStoreStats) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        this.set(pick(await read()));
      },
    });
  storeGauge('dfs_store_chunks', 'Chunks this node stores.', (s) => s.chunks);
  storeGauge('dfs_store_used_bytes', 'Bytes of chunks this node stores.', (s) => s.bytes);
  storeGauge('dfs_store_free_bytes', 'Free bytes on the store\'s file system.', (s) => s.freeBytes);
  storeGauge('dfs_store_total_bytes', 'Size of the store\'s file system.', (s) => s.totalBytes);
  return {
    observe(op, outcome, bytes, seconds) {
      requests.inc({ op, outcome });
      if (bytes > 0) moved.inc({ op }, bytes);
      latency.observe({ op }, seconds);
    },
  };
}
