import { ClassicLevel } from 'classic-level';
import { DfsError } from '../errors/index.ts';
import type { Entry, HardState, PersistedState, Ready, Snapshot } from '../raft/index.ts';
import type { RaftLogStore } from './raft-driver.ts';

type Db = ClassicLevel<string, Uint8Array>;
type BatchOp = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string };

const HARD_STATE_KEY = 'hs';
const SNAPSHOT_META_KEY = 'snap:meta';
const SNAPSHOT_DATA_KEY = 'snap:data';
const ENTRY_PREFIX = 'e:';
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Entry keys sort by index: 16 hex digits, big-endian. */
function entryKey(index: number): string {
  return ENTRY_PREFIX + index.toString(16).padStart(16, '0');
}

// An entry on disk: term (float64 BE, exact for safe integers), type byte, payload.
function encodeEntry(e: Entry): Uint8Array {
  const out = new Uint8Array(9 + e.data.length);
  new DataView(out.buffer).setFloat64(0, e.term);
  out[8] = e.type === 'config' ? 1 : 0;
  out.set(e.data, 9);
  return out;
}

function decodeEntry(index: number, raw: Uint8Array): Entry {
  if (raw.length < 9) throw new DfsError('ERR_IO', `raft log entry ${index} is truncated`);
  const term = new DataView(raw.buffer, raw.byteOffset, raw.length).getFloat64(0);
  return { index, term, type: raw[8] === 1 ? 'config' : 'normal', data: raw.slice(9) };
}

/**
 * The Raft log, hard state and snapshot of one master, in classic-level (LevelDB). Every change
 * is one atomic batch written with sync: what a Ready asks to persist is durable before its
 * messages leave. The core keeps the log tail in memory; this store is read once, at start.
 */
export class RaftStore implements RaftLogStore {
  readonly #db: Db;
  /** Persisted entry indexes are exactly [#first, #last]; empty when #last < #first. */
  #first = 1;
  #last = 0;
  #hardState: HardState = { term: 0, vote: null, commit: 0 };
  #snapshotIndex = 0;
  /** Writes run one after another, in call order (a compaction may overlap the Ready loop). */
  #serial: Promise<unknown> = Promise.resolve();

  private constructor(db: Db) {
    this.#db = db;
  }

  static async open(dir: string): Promise<RaftStore> {
    const db: Db = new ClassicLevel(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
    try {
      await db.open();
    } catch (err) {
      const locked = /lock/i.test(String((err as Error)?.cause ?? err));
      throw new DfsError('ERR_IO', locked ? `raft log ${dir} is in use by another process` : `cannot open raft log ${dir}: ${(err as Error).message}`, { cause: err });
    }
    return new RaftStore(db);
  }

  /** Everything persisted, exactly as earlier Ready()s asked, for RaftNode.restart; undefined when new. */
  async load(): Promise<PersistedState | undefined> {
    const hs = await this.#db.get(HARD_STATE_KEY);
    const snapMeta = await this.#db.get(SNAPSHOT_META_KEY);
    let snapshot: Snapshot | null = null;
    if (snapMeta) {
      const data = (await this.#db.get(SNAPSHOT_DATA_KEY)) ?? new Uint8Array(0);
      snapshot = { metadata: JSON.parse(decoder.decode(snapMeta)), data };
      this.#snapshotIndex = snapshot.metadata.index;
    }
    const entries: Entry[] = [];
    for await (const [key, value] of this.#db.iterator({ gte: ENTRY_PREFIX, lt: `${ENTRY_PREFIX}\xff` })) {
      const index = Number.parseInt(key.slice(ENTRY_PREFIX.length), 16);
      if (snapshot && index <= snapshot.metadata.index) continue; // compacted, kept only by a crash mid-compaction
      if (entries.length > 0 && index !== entries[entries.length - 1]!.index + 1) {
        throw new DfsError('ERR_IO', `raft log has a gap before entry ${index}`);
      }
      entries.push(decodeEntry(index, value));
    }
    this.#first = entries[0]?.index ?? (snapshot ? snapshot.metadata.index + 1 : 1);
    this.#last = entries.length > 0 ? entries[entries.length - 1]!.index : this.#first - 1;
    if (!hs && !snapshot && entries.length === 0) return undefined;
    const hardState: HardState = hs ? JSON.parse(decoder.decode(hs)) : { term: 0, vote: null, commit: 0 };
    this.#hardState = hardState;
    return { hardState, snapshot, entries };
  }

  /** Persists step 1 of a Ready (snapshot, entries, hard state) as one synced batch. */
  persistReady(rd: Pick<Ready, 'snapshot' | 'entries' | 'hardState'>): Promise<void> {
    return this.#inTurn(() => this.#persistReady(rd));
  }

  /** Persists a snapshot the application took (compaction) and drops the entries it covers. */
  saveSnapshot(snapshot: Snapshot): Promise<void> {
    return this.#inTurn(() => this.#saveSnapshot(snapshot));
  }

  #inTurn<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#serial.then(op, op);
    this.#serial = run.catch(() => {});
    return run;
  }

  async #persistReady(rd: Pick<Ready, 'snapshot' | 'entries' | 'hardState'>): Promise<void> {
    const ops: BatchOp[] = [];
    let first = this.#first;
    let last = this.#last;
    if (rd.snapshot) {
      // A snapshot replaces the whole persisted log.
      for (let i = first; i <= last; i++) ops.push({ type: 'del', key: entryKey(i) });
      ops.push(...snapshotOps(rd.snapshot));
      first = rd.snapshot.metadata.index + 1;
      last = first - 1;
    }
    if (rd.entries.length > 0) {
      const from = rd.entries[0]!.index;
      const to = rd.entries[rd.entries.length - 1]!.index;
      if (from > last + 1) throw new Error(`raft store: entries start at ${from} after a log ending at ${last}`);
      for (let i = Math.max(from, to + 1); i <= last; i++) ops.push({ type: 'del', key: entryKey(i) });
      for (const e of rd.entries) ops.push({ type: 'put', key: entryKey(e.index), value: encodeEntry(e) });
      if (last < first) first = from;
      last = to;
    }
    if (rd.hardState) ops.push({ type: 'put', key: HARD_STATE_KEY, value: encoder.encode(JSON.stringify(rd.hardState)) });
    if (ops.length === 0) return;
    // As etcd's MustSync: a Ready that only moves the commit index need not be synced — a lost
    // commit index is learned again from the leader — which halves the fsyncs per commit.
    const previous = this.#hardState;
    const mustSync = rd.snapshot !== null || rd.entries.length > 0 || (rd.hardState !== null && (rd.hardState.term !== previous.term || rd.hardState.vote !== previous.vote));
    await this.#write(ops, mustSync);
    if (rd.hardState) this.#hardState = rd.hardState;
    if (rd.snapshot) this.#snapshotIndex = rd.snapshot.metadata.index;
    this.#first = first;
    this.#last = last;
  }

  async #saveSnapshot(snapshot: Snapshot): Promise<void> {
    if (snapshot.metadata.index <= this.#snapshotIndex) return; // one from the leader is newer
    const upTo = Math.min(snapshot.metadata.index, this.#last);
    const ops: BatchOp[] = snapshotOps(snapshot);
    for (let i = this.#first; i <= upTo; i++) ops.push({ type: 'del', key: entryKey(i) });
    await this.#write(ops);
    this.#snapshotIndex = snapshot.metadata.index;
    this.#first = Math.max(this.#first, snapshot.metadata.index + 1);
    if (this.#last < this.#first) this.#last = this.#first - 1;
  }

  get persistedRange(): { first: number; last: number } {
    return { first: this.#first, last: this.#last };
  }

  async close(): Promise<void> {
    await this.#serial;
    await this.#db.close();
  }

  async #write(ops: BatchOp[], sync = true): Promise<void> {
    try {
      await this.#db.batch(ops, { sync });
    } catch (err) {
      const message = String((err as Error)?.message);
      const code = /no space/i.test(message) ? 'ERR_NO_SPACE' : 'ERR_IO';
      throw new DfsError(code, `cannot persist the raft log: ${message}`, { cause: err });
    }
  }
}

function snapshotOps(s: Snapshot): BatchOp[] {
  return [
    { type: 'put', key: SNAPSHOT_META_KEY, value: encoder.encode(JSON.stringify(s.metadata)) },
    { type: 'put', key: SNAPSHOT_DATA_KEY, value: s.data },
  ];
}
