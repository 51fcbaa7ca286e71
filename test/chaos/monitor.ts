import type { MetaClient } from '../../src/client/index.ts';
import type { MasterStatus } from '../../src/meta/index.ts';
import type { History } from './history.ts';
import type { Procs } from './procs.ts';

export type ChunkHealth = NonNullable<MasterStatus['chunks']>;

export interface RepairEpisode {
  readonly startMs: number;
  endMs: number | undefined;
  peakUnder: number;
}

/**
 * Watches the leader once a second: who leads (leader changes), and its chunk health
 * (MasterStatus.chunks). An episode of under-replication runs from the first sample with
 * under-replicated or missing chunks to the first with none: its length is a repair's length.
 */
export class Monitor {
  readonly #meta: MetaClient;
  readonly #procs: Procs;
  readonly #history: History;
  readonly episodes: RepairEpisode[] = [];
  #timer: NodeJS.Timeout | undefined;
  #busy = false;
  #leaderTerm: string | undefined;
  leaderChanges = 0;
  /** When each leader change was seen (history clock). */
  readonly leaderChangeTimes: number[] = [];
  /** The leader's last chunk health, and when it was seen. */
  latest: { atMs: number; leader: string; term: number; chunks: ChunkHealth | undefined; liveNodes: number | undefined } | undefined;
  /** Whether any leader ever reported chunk health. */
  sawChunkHealth = false;
  maxRepairing = 0;

  constructor(meta: MetaClient, procs: Procs, history: History) {
    this.#meta = meta;
    this.#procs = procs;
    this.#history = history;
  }

  start(): void {
    this.#timer = setInterval(() => void this.sample(), 1_000);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  async sample(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const all = await this.#procs.statuses(this.#meta);
      const leader = all.filter((s) => s.status?.role === 'leader').sort((a, b) => b.status!.term - a.status!.term)[0];
      if (!leader?.status) return;
      const s = leader.status;
      const atMs = this.#history.now();
      const key = `${leader.name}@${s.term}`;
      if (this.#leaderTerm !== undefined && this.#leaderTerm !== key) {
        this.leaderChanges++;
        this.leaderChangeTimes.push(atMs);
        this.#history.event('leader', { name: leader.name, term: s.term });
      }
      this.#leaderTerm = key;
      this.latest = { atMs, leader: leader.name, term: s.term, chunks: s.chunks, liveNodes: s.liveNodes };
      if (s.chunks) {
        this.sawChunkHealth = true;
        this.maxRepairing = Math.max(this.maxRepairing, s.chunks.repairing);
        this.#track(atMs, s.chunks);
      }
    } catch {
      // no answer this time
    } finally {
      this.#busy = false;
    }
  }

  #track(atMs: number, c: ChunkHealth): void {
    const open = this.episodes.at(-1);
    const bad = c.underReplicated + c.missing;
    if (bad > 0) {
      if (!open || open.endMs !== undefined) {
        this.episodes.push({ startMs: atMs, endMs: undefined, peakUnder: bad });
        this.#history.event('under-replicated', { underReplicated: c.underReplicated, missing: c.missing, repairing: c.repairing });
      } else open.peakUnder = Math.max(open.peakUnder, bad);
    } else if (open && open.endMs === undefined) {
      open.endMs = atMs;
      this.#history.event('replicated', { afterMs: Math.round(atMs - open.startMs) });
    }
  }

  /** Whether the chunks are all at RF now (by the last sample); undefined when unknown. */
  healthy(): boolean | undefined {
    const c = this.latest?.chunks;
    if (!c) return undefined;
    return c.ready && c.underReplicated === 0 && c.missing === 0;
  }

  /** The longest episode so far (an open one counts up to now). */
  longestRepairMs(nowMs: number): { ms: number; open: boolean } {
    let best = { ms: 0, open: false };
    for (const e of this.episodes) {
      const ms = (e.endMs ?? nowMs) - e.startMs;
      if (ms > best.ms) best = { ms, open: e.endMs === undefined };
    }
    return best;
  }
}
