import { mkdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { DfsError, fromSystemError } from '../errors/index.ts';
import type { Entry, HardState, PersistedState, Ready, Snapshot, SnapshotMetadata } from '../raft/index.ts';
import type { RaftLogStore } from './raft-driver.ts';
import { readSnapshotFile, removeStrayFiles, type SnapshotFileInfo, snapshotFileName, writeSnapshotFile } from './snapshot-file.ts';

type Db = ClassicLevel<string, Uint8Array>;
type BatchOp = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string };

const HARD_STATE_KEY = 'hs';
const SNAPSHOT_META_KEY = 'snap:meta';
/** Where snapshot bytes lived before they moved to files; read by load(), deleted by the next snapshot. */
const LEGACY_SNAPSHOT_DATA_KEY = 'snap:data';
/** Snapshot files, in the LevelDB directory (LevelDB ignores what it did not name). */
const SNAPSHOT_DIR = 'snapshots';
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

/** The snapshot metadata as stored under SNAPSHOT_META_KEY: the Raft metadata and where the bytes are. */
interface StoredSnapshotMeta extends SnapshotMetadata {
  /** The bytes' file in SNAPSHOT_DIR; null for an empty snapshot; absent in the legacy layout. */
  readonly file?: string | null;
  readonly bytes?: number;
  readonly sha256?: string;
}

/**
 * The Raft log, hard state and snapshot of one master, in classic-level (LevelDB). Every change
 * is one atomic batch written with sync: what a Ready asks to persist is durable before its
 * messages leave. The core keeps the log tail in memory; this store is read once, at start.
 *
 * Snapshot bytes (tens of MB and more) are not a LevelDB value: each snapshot is a file in
 * `<dir>/snapshots/`, written whole first (temp file, fsync, rename, directory fsync), and only
 * then the batch that points the snapshot metadata at it (and drops the entries it covers) is
 * committed; the file it replaces is deleted afterwards. A crash at any point leaves either the
 * old snapshot (the new file is a stray) or the new one (the old file is a stray): load() reads
 * the file the metadata names, checks its length and SHA-256, and removes every other file.
 */
export class RaftStore implements RaftLogStore {
  readonly #db: Db;
  /** Persisted entry indexes are exactly [#first, #last]; empty when #last < #first. */
  #first = 1;
  #last = 0;
  #hardState: HardState = { term: 0, vote: null, commit: 0 };
  #snapshotIndex = 0;
  /** The file the committed snapshot metadata points at (null: none, or an empty snapshot). */
  #snapshotFile: string | null = null;
  /** A legacy snapshot value may still be in LevelDB: the next snapshot batch deletes it. */
  #legacyData = true;
  readonly #snapshotDir: string;
  /** Writes run one after another, in call order (a compaction may overlap the Ready loop). */
  #serial: Promise<unknown> = Promise.resolve();
  /** Snapshot files being written, and compactions under way (partly outside the turn): close() awaits them. */
  readonly #writing = new Set<Promise<unknown>>();

  private constructor(db: Db, dir: string) {
    this.#db = db;
    this.#snapshotDir = join(dir, SNAPSHOT_DIR);
  }

  static async open(dir: string): Promise<RaftStore> {
    const db: Db = new ClassicLevel(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
    try {
      await db.open();
    } catch (err) {
      const locked = /lock/i.test(String((err as Error)?.cause ?? err));
      throw new DfsError('ERR_IO', locked ? `raft log ${dir} is in use by another process` : `cannot open raft log ${dir}: ${(err as Error).message}`, { cause: err });
    }
    try {
      await mkdir(join(dir, SNAPSHOT_DIR), { recursive: true, mode: 0o700 });
    } catch (err) {
      await db.close().catch(() => {});
      throw fromSystemError(err, `cannot create the snapshot directory of raft log ${dir}`);
    }
    return new RaftStore(db, dir);
  }

  /** Everything persisted, exactly as earlier Ready()s asked, for RaftNode.restart; undefined when new. */
  async load(): Promise<PersistedState | undefined> {
    const hs = await this.#db.get(HARD_STATE_KEY);
    const snapMeta = await this.#db.get(SNAPSHOT_META_KEY);
    let snapshot: Snapshot | null = null;
    this.#snapshotFile = null;
    if (snapMeta) {
      const stored = JSON.parse(decoder.decode(snapMeta)) as StoredSnapshotMeta;
      let data: Uint8Array;
      if (stored.file === undefined) {
        data = (await this.#db.get(LEGACY_SNAPSHOT_DATA_KEY)) ?? new Uint8Array(0);
      } else if (stored.file === null) {
        data = new Uint8Array(0);
      } else {
        if (!isSnapshotFileInfo(stored)) throw new DfsError('ERR_IO', `raft log snapshot metadata is malformed: ${decoder.decode(snapMeta).slice(0, 200)}`);
        data = await readSnapshotFile(this.#snapshotDir, stored);
        this.#snapshotFile = stored.file;
      }
      snapshot = { metadata: { index: stored.index, term: stored.term, config: stored.config }, data };
      this.#snapshotIndex = snapshot.metadata.index;
    }
    // Files no metadata points at: a snapshot written but never committed, or one replaced by a
    // newer one just before a crash. Only at start (load), when no snapshot is being written.
    if (this.#writing.size === 0) await removeStrayFiles(this.#snapshotDir, new Set(this.#snapshotFile ? [this.#snapshotFile] : []));
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

  /**
   * Persists step 1 of a Ready (snapshot, entries, hard state) as one synced batch; a snapshot's
   * file is written (and synced) first, while earlier operations may still be running.
   */
  persistReady(rd: Pick<Ready, 'snapshot' | 'entries' | 'hardState'>): Promise<void> {
    const file = rd.snapshot ? this.#writeFile(rd.snapshot) : undefined;
    return this.#inTurn(async () => this.#persistReady(rd, file === undefined ? null : await file));
  }

  /**
   * Persists a snapshot the application took (compaction) and drops the entries it covers. The
   * file is written before this takes its turn, so Readies persisted meanwhile do not wait for
   * it; its batch then commits after them, which is safe: it only deletes entries up to its
   * index (committed entries, which no later Ready rewrites), and it is skipped if a snapshot
   * from the leader got further meanwhile.
   */
  saveSnapshot(snapshot: Snapshot): Promise<void> {
    return this.#track((async () => {
      const file = await this.#writeFile(snapshot);
      await this.#inTurn(() => this.#saveSnapshot(snapshot, file));
    })());
  }

  /** Writes a snapshot's bytes to a new file; null for an empty snapshot (nothing to write). */
  #writeFile(snapshot: Snapshot): Promise<SnapshotFileInfo | null> {
    if (snapshot.data.length === 0) return Promise.resolve(null);
    const name = snapshotFileName(snapshot.metadata.index, snapshot.metadata.term);
    return this.#track(writeSnapshotFile(this.#snapshotDir, name, snapshot.data));
  }

  /** Remembers an operation that runs partly outside the turn, for load() and close(). */
  #track<T>(op: Promise<T>): Promise<T> {
    const tracked = op.then(
      () => {},
      () => {},
    );
    this.#writing.add(tracked);
    void tracked.finally(() => this.#writing.delete(tracked));
    return op;
  }

  #inTurn<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#serial.then(op, op);
    this.#serial = run.catch(() => {});
    return run;
  }

  async #persistReady(rd: Pick<Ready, 'snapshot' | 'entries' | 'hardState'>, file: SnapshotFileInfo | null): Promise<void> {
    const ops: BatchOp[] = [];
    let first = this.#first;
    let last = this.#last;
    if (rd.snapshot) {
      // A snapshot replaces the whole persisted log.
      for (let i = first; i <= last; i++) ops.push({ type: 'del', key: entryKey(i) });
      ops.push(...this.#snapshotOps(rd.snapshot, file));
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
    // On a failed batch the file stays: a write whose fsync failed may still be in LevelDB's log
    // and be replayed at the next open, pointing at it (load() removes it if nothing does).
    await this.#write(ops, mustSync);
    if (rd.hardState) this.#hardState = rd.hardState;
    if (rd.snapshot) {
      this.#snapshotIndex = rd.snapshot.metadata.index;
      await this.#replaceFile(file);
    }
    this.#first = first;
    this.#last = last;
  }

  async #saveSnapshot(snapshot: Snapshot, file: SnapshotFileInfo | null): Promise<void> {
    if (snapshot.metadata.index <= this.#snapshotIndex) {
      // One from the leader is newer: this file was never pointed at.
      if (file) await unlink(join(this.#snapshotDir, file.file)).catch(() => {});
      return;
    }
    const upTo = Math.min(snapshot.metadata.index, this.#last);
    const ops: BatchOp[] = this.#snapshotOps(snapshot, file);
    for (let i = this.#first; i <= upTo; i++) ops.push({ type: 'del', key: entryKey(i) });
    await this.#write(ops); // a failed batch leaves the file, as in #persistReady
    this.#snapshotIndex = snapshot.metadata.index;
    await this.#replaceFile(file);
    this.#first = Math.max(this.#first, snapshot.metadata.index + 1);
    if (this.#last < this.#first) this.#last = this.#first - 1;
  }

  /** The batch ops that point the snapshot metadata at `file` (and drop a legacy value). */
  #snapshotOps(s: Snapshot, file: SnapshotFileInfo | null): BatchOp[] {
    const meta: StoredSnapshotMeta = { ...s.metadata, file: file?.file ?? null, ...(file ? { bytes: file.bytes, sha256: file.sha256 } : {}) };
    const ops: BatchOp[] = [{ type: 'put', key: SNAPSHOT_META_KEY, value: encoder.encode(JSON.stringify(meta)) }];
    if (this.#legacyData) ops.push({ type: 'del', key: LEGACY_SNAPSHOT_DATA_KEY });
    return ops;
  }

  /** After a snapshot batch committed: the old file goes (best effort; load() removes leftovers). */
  async #replaceFile(file: SnapshotFileInfo | null): Promise<void> {
    this.#legacyData = false;
    const old = this.#snapshotFile;
    this.#snapshotFile = file?.file ?? null;
    if (old !== null && old !== this.#snapshotFile) await unlink(join(this.#snapshotDir, old)).catch(() => {});
  }

  /** The directory holding the snapshot files (for tests and tools). */
  get snapshotDir(): string {
    return this.#snapshotDir;
  }

  /** The name of the committed snapshot's file, null if there is none (for tests and tools). */
  get snapshotFile(): string | null {
    return this.#snapshotFile;
  }

  get persistedRange(): { first: number; last: number } {
    return { first: this.#first, last: this.#last };
  }

  async close(): Promise<void> {
    while (this.#writing.size > 0) await Promise.all(this.#writing);
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

function isSnapshotFileInfo(m: StoredSnapshotMeta): m is StoredSnapshotMeta & SnapshotFileInfo {
  return (
    typeof m.file === 'string' &&
    /^[0-9a-f]{16}-[0-9a-f]{16}-[0-9a-f]{8}\.snap$/.test(m.file) &&
    Number.isSafeInteger(m.bytes) &&
    typeof m.sha256 === 'string' &&
    /^[0-9a-f]{64}$/.test(m.sha256)
  );
}
