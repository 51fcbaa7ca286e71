import { createHash } from 'node:crypto';
import { DfsError } from '../../src/errors/index.ts';
import type { RaftLogStore } from '../../src/master/raft-driver.ts';
import type { Entry, HardState, PersistedState, Ready, Snapshot, SnapshotMetadata } from '../../src/raft/index.ts';
import type { ClockScope, SimRandom } from './sim-env.ts';

/**
 * A simulated disk under one master's Raft log, with the durability of LevelDB's write-ahead log
 * as the production store (src/master/raft-store.ts) uses it:
 *
 * - A batch is atomic: after a crash it is there whole or not at all.
 * - Batches reach the log in the order they were written. A batch written with `sync` is durable
 *   when its promise resolves — and so is everything written before it (the fsync covers the
 *   whole log file). A batch written without sync (the store's commit-only hard state) is in a
 *   volatile tail: readable by the process, lost or kept by a crash.
 * - A crash keeps a prefix of the volatile tail (nothing, all of it, or a random part), never a
 *   later batch without the earlier ones: durable data is never reordered or torn.
 * - Writes take simulated time (a latency event on the process's clock, which dies with it).
 * - Snapshot files beside the log (the store writes temp, fsync, rename, directory fsync): a
 *   file exists, whole, once its write resolved; a crash before leaves none.
 * - Faults, armed for the next write (or the next snapshot batch or file): `eio` (the write
 *   fails; a batch's bytes may or may not have reached the log — LevelDB wrote the record before
 *   the failed fsync, and the next open replays what is there), `enospc` (the write fails;
 *   nothing was written), `hang` (the write never completes; a crash keeps a batch or not).
 */

export type BatchOp = { readonly type: 'put'; readonly key: string; readonly value: Uint8Array } | { readonly type: 'del'; readonly key: string };
export type DiskFault = 'eio' | 'enospc' | 'hang';
/** Which write an armed fault hits: the next one, or the next of a kind. */
export type FaultTarget = 'any' | 'snapshotBatch' | 'snapshotFile';

export interface DiskLatency {
  /** A synced write (fsync): uniform in [min, max] ms. */
  readonly syncMinMs: number;
  readonly syncMaxMs: number;
  /** A write without sync. */
  readonly bufferedMinMs: number;
  readonly bufferedMaxMs: number;
  /** Reading the whole log at start. */
  readonly loadMs: number;
}

export const DEFAULT_DISK_LATENCY: DiskLatency = { syncMinMs: 1, syncMaxMs: 4, bufferedMinMs: 0, bufferedMaxMs: 1, loadMs: 2 };

interface TailWrite {
  readonly ops: readonly BatchOp[];
  readonly sync: boolean;
}

export interface DiskStats {
  writes: number;
  syncedWrites: number;
  failedWrites: number;
  hungWrites: number;
  crashes: number;
  /** Batches in the volatile tail that crashes kept / lost. */
  tailKept: number;
  tailLost: number;
}

/** How a crash treats the volatile tail. */
export type TailFate = 'loseAll' | 'keepAll' | 'prefix';

export class SimDisk {
  readonly name: string;
  readonly #rng: SimRandom;
  /** How long writes take; the simulator may change it (a disk that slows down). */
  latency: DiskLatency;
  /** What survives any crash. */
  readonly #image = new Map<string, Uint8Array>();
  /**
   * Files beside the log (snapshot files): a file appears whole once its write resolved (the
   * production writes a temp file, fsyncs, renames, fsyncs the directory); an unlink takes
   * effect when it completes and sticks (the pessimistic choice: a file is never resurrected).
   */
  readonly #files = new Map<string, Uint8Array>();
  /** Written (or being written) since the last completed fsync, in order. */
  #tail: TailWrite[] = [];
  #clock: ClockScope | undefined;
  #armed: { readonly fault: DiskFault; readonly which: FaultTarget } | null = null;
  /** Bumped by every crash: a write issued before it never completes. */
  #epoch = 0;
  /** Called when a write hangs (the simulator may crash the process before it completes). */
  onHang: ((disk: SimDisk) => void) | undefined;
  /** Called as a failed write is reported to the process (just before its promise rejects). */
  onWriteFailed: ((disk: SimDisk, fault: 'eio' | 'enospc') => void) | undefined;
  readonly stats: DiskStats = { writes: 0, syncedWrites: 0, failedWrites: 0, hungWrites: 0, crashes: 0, tailKept: 0, tailLost: 0 };

  constructor(name: string, rng: SimRandom, latency: DiskLatency = DEFAULT_DISK_LATENCY) {
    this.name = name;
    this.#rng = rng;
    this.latency = latency;
  }

  /** The process (incarnation) now using the disk: its latency events run on its clock. */
  attach(clock: ClockScope): void {
    this.#clock = clock;
  }

  /**
   * The next write (or the next one of a kind: a batch that writes snapshot metadata, a snapshot
   * file) fails or hangs as `fault` says; null disarms.
   */
  arm(fault: DiskFault | null, which: FaultTarget = 'any'): void {
    this.#armed = fault === null ? null : { fault, which };
  }

  get armed(): DiskFault | null {
    return this.#armed?.fault ?? null;
  }

  /** The armed fault if it hits this write (and then it is spent). */
  #fault(kind: 'batch' | 'file', ops: readonly BatchOp[] = []): DiskFault | null {
    const armed = this.#armed;
    if (armed === null) return null;
    const hits =
      armed.which === 'any' ||
      (armed.which === 'snapshotFile' && kind === 'file') ||
      (armed.which === 'snapshotBatch' && kind === 'batch' && ops.some((op) => op.key === SNAPSHOT_META_KEY));
    if (!hits) return null;
    this.#armed = null;
    return armed.fault;
  }

  /** Batches a crash could still lose. */
  get volatileWrites(): number {
    return this.#tail.length;
  }

  write(ops: readonly BatchOp[], sync: boolean): Promise<void> {
    const clock = this.#clock;
    if (!clock) return Promise.reject(new Error(`${this.name}: disk is not attached`));
    this.stats.writes++;
    const fault = this.#fault('batch', ops);
    const latency = sync ? this.#rng.int(this.latency.syncMinMs, this.latency.syncMaxMs) : this.#rng.int(this.latency.bufferedMinMs, this.latency.bufferedMaxMs);
    if (fault === 'enospc') {
      this.stats.failedWrites++;
      return new Promise((_, reject) =>
        void clock.setTimeout(() => {
          this.onWriteFailed?.(this, 'enospc');
          reject(new Error('ENOSPC: no space left on device, write'));
        }, latency),
      );
    }
    const write: TailWrite = { ops, sync };
    const epoch = this.#epoch;
    this.#tail.push(write);
    if (fault === 'hang') {
      this.stats.hungWrites++;
      this.onHang?.(this);
      return new Promise(() => {}); // never completes: only a crash ends it
    }
    if (fault === 'eio') {
      this.stats.failedWrites++;
      return new Promise((_, reject) =>
        void clock.setTimeout(() => {
          this.onWriteFailed?.(this, 'eio');
          reject(new Error('EIO: i/o error, fsync'));
        }, latency),
      );
    }
    return new Promise((resolve) => {
      clock.setTimeout(() => {
        if (epoch !== this.#epoch) return; // the process died first: it never learns
        if (sync) {
          // The fsync made this batch and every one before it durable.
          this.stats.syncedWrites++;
          const at = this.#tail.indexOf(write);
          for (const w of this.#tail.slice(0, at + 1)) this.#applyToImage(w.ops);
          this.#tail = this.#tail.slice(at + 1);
        }
        resolve();
      }, latency);
    });
  }

  /**
   * Writes a file durably (temp, fsync, rename, directory fsync): it exists, whole, once this
   * resolves. An armed fault hits it like a batch; a crash before it completes leaves no file.
   */
  writeFile(name: string, data: Uint8Array): Promise<void> {
    const clock = this.#clock;
    if (!clock) return Promise.reject(new Error(`${this.name}: disk is not attached`));
    this.stats.writes++;
    const fault = this.#fault('file');
    const epoch = this.#epoch;
    const latency = this.#rng.int(this.latency.syncMinMs, this.latency.syncMaxMs);
    if (fault === 'hang') {
      this.stats.hungWrites++;
      this.onHang?.(this);
      return new Promise(() => {});
    }
    const copy = data.slice();
    return new Promise((resolve, reject) => {
      clock.setTimeout(() => {
        if (epoch !== this.#epoch) return;
        if (fault !== null) {
          this.stats.failedWrites++;
          this.onWriteFailed?.(this, fault);
          reject(new Error(fault === 'enospc' ? `ENOSPC: no space left on device, write '${name}.tmp'` : `EIO: i/o error, fsync '${name}.tmp'`));
          return;
        }
        this.#files.set(name, copy);
        resolve();
      }, latency);
    });
  }

  /** Removes a file (a no-op when absent); takes effect when the promise resolves. */
  unlink(name: string): Promise<void> {
    const clock = this.#clock;
    if (!clock) return Promise.reject(new Error(`${this.name}: disk is not attached`));
    const epoch = this.#epoch;
    return new Promise((resolve, reject) => {
      clock.setTimeout(() => {
        if (epoch !== this.#epoch) return;
        if (!this.#files.delete(name)) reject(Object.assign(new Error(`ENOENT: no such file, unlink '${name}'`), { code: 'ENOENT' }));
        else resolve();
      }, this.#rng.int(this.latency.bufferedMinMs, this.latency.bufferedMaxMs));
    });
  }

  readFile(name: string): Uint8Array | undefined {
    return this.#files.get(name);
  }

  listFiles(): string[] {
    return [...this.#files.keys()].sort();
  }

  /** The process's view: the durable image plus its volatile writes (it reads its own writes). */
  view(): Map<string, Uint8Array> {
    if (this.#tail.length === 0) return this.#image;
    const view = new Map(this.#image);
    for (const w of this.#tail) applyOps(view, w.ops);
    return view;
  }

  /** How long reading the log at start takes. */
  get loadMs(): number {
    return this.latency.loadMs;
  }

  get clock(): ClockScope | undefined {
    return this.#clock;
  }

  /**
   * The process died: the volatile tail is kept up to a random prefix, pending latency events
   * die with the process's clock, and an armed fault is disarmed.
   */
  crash(fate?: TailFate): { kept: number; lost: number; fate: TailFate } {
    this.stats.crashes++;
    this.#epoch++;
    const n = this.#tail.length;
    const chosen: TailFate = fate ?? (n === 0 ? 'loseAll' : this.#rng.pick<TailFate>(['loseAll', 'keepAll', 'prefix']));
    const kept = chosen === 'loseAll' ? 0 : chosen === 'keepAll' ? n : this.#rng.int(0, n);
    for (const w of this.#tail.slice(0, kept)) this.#applyToImage(w.ops);
    this.stats.tailKept += kept;
    this.stats.tailLost += n - kept;
    this.#tail = [];
    this.#clock = undefined;
    this.#armed = null;
    return { kept, lost: n - kept, fate: chosen };
  }

  /** The durable image (for tests of the disk itself). */
  durable(): ReadonlyMap<string, Uint8Array> {
    return this.#image;
  }

  /** A seeded source for what the store makes up (snapshot file names). */
  get rng(): SimRandom {
    return this.#rng;
  }

  #applyToImage(ops: readonly BatchOp[]): void {
    applyOps(this.#image, ops);
  }
}

function applyOps(map: Map<string, Uint8Array>, ops: readonly BatchOp[]): void {
  for (const op of ops) {
    if (op.type === 'put') map.set(op.key, op.value);
    else map.delete(op.key);
  }
}

// ---- the store: src/master/raft-store.ts (+ snapshot-file.ts) over the simulated disk ----

export const HARD_STATE_KEY = 'hs';
export const SNAPSHOT_META_KEY = 'snap:meta';
const LEGACY_SNAPSHOT_DATA_KEY = 'snap:data';
const ENTRY_PREFIX = 'e:';
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The key of log entry `index` (as the production store writes it). */
export function entryKey(index: number): string {
  return ENTRY_PREFIX + index.toString(16).padStart(16, '0');
}

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

interface SnapshotFileInfo {
  readonly file: string;
  readonly bytes: number;
  readonly sha256: string;
}

interface StoredSnapshotMeta extends SnapshotMetadata {
  readonly file?: string | null;
  readonly bytes?: number;
  readonly sha256?: string;
}

function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
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

export interface SimRaftStoreOptions {
  /** Sees every snapshot the store is asked to persist (one from the leader, or a compaction). */
  readonly onSnapshot?: (snapshot: Snapshot, source: 'leader' | 'compaction') => void;
  /** Called as a persistReady or saveSnapshot promise rejects: the caller learns of a failure. */
  readonly onRejected?: (err: unknown) => void;
  /**
   * What the production store does when a snapshot's batch fails: it unlinks the snapshot file
   * (default true, as production). But a batch that failed with EIO may still be in LevelDB's
   * log and come back at the next open, pointing at the deleted file: the master cannot start
   * again (KNOWN BUG in src/master/raft-store.ts, see test/master/master-sim.test.ts). False
   * leaves the file to load()'s stray-file sweep, which is safe.
   */
  readonly unlinkFileOnFailedBatch?: boolean;
}

/**
 * `RaftLogStore` over a `SimDisk`, a port of the production RaftStore (src/master/raft-store.ts)
 * with the same keys, batches, sync rule and snapshot files: a Ready with a snapshot, entries, or
 * a new term or vote is written with sync; one that only moves the commit index is not (as
 * etcd's MustSync), so a crash may lose it. A snapshot's bytes go to a file written durably
 * before the batch that points at it (outside the write turn, so Readies persisted meanwhile do
 * not wait); the file it replaces is unlinked after that batch; a failed batch unlinks its file;
 * load() reads the file the metadata names, checks length and SHA-256, and removes every other
 * file. Writes run one after another in call order. A new SimRaftStore over the same disk is a
 * restarted process. (Kept in step with the production store by the test that runs both.)
 */
export class SimRaftStore implements RaftLogStore {
  readonly #disk: SimDisk;
  #first = 1;
  #last = 0;
  #hardState: HardState = { term: 0, vote: null, commit: 0 };
  #snapshotIndex = 0;
  #snapshotFile: string | null = null;
  #legacyData = true;
  #serial: Promise<unknown> = Promise.resolve();
  readonly #writing = new Set<Promise<unknown>>();
  readonly #onSnapshot: SimRaftStoreOptions['onSnapshot'];
  readonly #onRejected: SimRaftStoreOptions['onRejected'];
  readonly #unlinkOnFailure: boolean;

  constructor(disk: SimDisk, options: SimRaftStoreOptions = {}) {
    this.#disk = disk;
    this.#onSnapshot = options.onSnapshot;
    this.#onRejected = options.onRejected;
    this.#unlinkOnFailure = options.unlinkFileOnFailedBatch ?? false;
  }

  #tap<T>(p: Promise<T>): Promise<T> {
    if (this.#onRejected) p.catch(this.#onRejected);
    return p;
  }

  async load(): Promise<PersistedState | undefined> {
    const clock = this.#disk.clock;
    if (clock) await clock.sleep(this.#disk.loadMs);
    const db = this.#disk.view();
    const hs = db.get(HARD_STATE_KEY);
    const snapMeta = db.get(SNAPSHOT_META_KEY);
    let snapshot: Snapshot | null = null;
    this.#snapshotFile = null;
    if (snapMeta) {
      const stored = JSON.parse(decoder.decode(snapMeta)) as StoredSnapshotMeta;
      let data: Uint8Array;
      if (stored.file === undefined) {
        data = db.get(LEGACY_SNAPSHOT_DATA_KEY) ?? new Uint8Array(0);
      } else if (stored.file === null) {
        data = new Uint8Array(0);
      } else {
        if (!isSnapshotFileInfo(stored)) throw new DfsError('ERR_IO', `raft log snapshot metadata is malformed: ${decoder.decode(snapMeta).slice(0, 200)}`);
        data = this.#readSnapshotFile(stored);
        this.#snapshotFile = stored.file;
      }
      snapshot = { metadata: { index: stored.index, term: stored.term, config: stored.config }, data };
      this.#snapshotIndex = snapshot.metadata.index;
    }
    if (this.#writing.size === 0) await this.#removeStrayFiles(new Set(this.#snapshotFile ? [this.#snapshotFile] : []));
    const entries: Entry[] = [];
    const keys = [...db.keys()].filter((k) => k.startsWith(ENTRY_PREFIX)).sort();
    for (const key of keys) {
      const index = Number.parseInt(key.slice(ENTRY_PREFIX.length), 16);
      if (snapshot && index <= snapshot.metadata.index) continue;
      if (entries.length > 0 && index !== entries[entries.length - 1]!.index + 1) {
        throw new DfsError('ERR_IO', `raft log has a gap before entry ${index}`);
      }
      entries.push(decodeEntry(index, db.get(key)!));
    }
    this.#first = entries[0]?.index ?? (snapshot ? snapshot.metadata.index + 1 : 1);
    this.#last = entries.length > 0 ? entries[entries.length - 1]!.index : this.#first - 1;
    if (!hs && !snapshot && entries.length === 0) return undefined;
    const hardState: HardState = hs ? JSON.parse(decoder.decode(hs)) : { term: 0, vote: null, commit: 0 };
    this.#hardState = hardState;
    return { hardState, snapshot, entries };
  }

  persistReady(rd: Pick<Ready, 'snapshot' | 'entries' | 'hardState'>): Promise<void> {
    if (rd.snapshot) this.#onSnapshot?.(rd.snapshot, 'leader');
    const file = rd.snapshot ? this.#writeFile(rd.snapshot) : undefined;
    return this.#tap(this.#inTurn(async () => this.#persistReady(rd, file === undefined ? null : await file)));
  }

  saveSnapshot(snapshot: Snapshot): Promise<void> {
    this.#onSnapshot?.(snapshot, 'compaction');
    return this.#tap(
      this.#track(
        (async () => {
          const file = await this.#writeFile(snapshot);
          await this.#inTurn(() => this.#saveSnapshot(snapshot, file));
        })(),
      ),
    );
  }

  #writeFile(snapshot: Snapshot): Promise<SnapshotFileInfo | null> {
    if (snapshot.data.length === 0) return Promise.resolve(null);
    const hex = (n: number): string => n.toString(16).padStart(16, '0');
    const name = `${hex(snapshot.metadata.index)}-${hex(snapshot.metadata.term)}-${this.#disk.rng.int(0, 0xffffffff).toString(16).padStart(8, '0')}.snap`;
    const data = snapshot.data;
    return this.#track(
      this.#disk.writeFile(name, data).then(
        () => ({ file: name, bytes: data.length, sha256: sha256Hex(data) }),
        (err: unknown) => {
          const message = String((err as Error)?.message);
          throw new DfsError(/ENOSPC/.test(message) ? 'ERR_NO_SPACE' : 'ERR_IO', `cannot write the snapshot file ${name}: ${message}`, { cause: err });
        },
      ),
    );
  }

  #readSnapshotFile(info: SnapshotFileInfo): Uint8Array {
    const data = this.#disk.readFile(info.file);
    if (data === undefined) throw new DfsError('ERR_IO', `cannot read the snapshot file ${info.file} that the raft log points at: ENOENT`);
    if (data.length !== info.bytes) throw new DfsError('ERR_IO', `snapshot file ${info.file} has ${data.length} bytes, the raft log says ${info.bytes}`);
    const digest = sha256Hex(data);
    if (digest !== info.sha256) throw new DfsError('ERR_IO', `snapshot file ${info.file} is corrupt (SHA-256 ${digest}, the raft log says ${info.sha256})`);
    return data.slice();
  }

  async #removeStrayFiles(keep: ReadonlySet<string>): Promise<void> {
    for (const name of this.#disk.listFiles()) {
      if (keep.has(name)) continue;
      await this.#disk.unlink(name).catch(() => {});
    }
  }

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
    const previous = this.#hardState;
    const mustSync = rd.snapshot !== null || rd.entries.length > 0 || (rd.hardState !== null && (rd.hardState.term !== previous.term || rd.hardState.vote !== previous.vote));
    try {
      await this.#write(ops, mustSync);
    } catch (err) {
      if (file && this.#unlinkOnFailure) await this.#disk.unlink(file.file).catch(() => {});
      throw err;
    }
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
      if (file) await this.#disk.unlink(file.file).catch(() => {});
      return;
    }
    const upTo = Math.min(snapshot.metadata.index, this.#last);
    const ops: BatchOp[] = this.#snapshotOps(snapshot, file);
    for (let i = this.#first; i <= upTo; i++) ops.push({ type: 'del', key: entryKey(i) });
    try {
      await this.#write(ops);
    } catch (err) {
      if (file && this.#unlinkOnFailure) await this.#disk.unlink(file.file).catch(() => {});
      throw err;
    }
    this.#snapshotIndex = snapshot.metadata.index;
    await this.#replaceFile(file);
    this.#first = Math.max(this.#first, snapshot.metadata.index + 1);
    if (this.#last < this.#first) this.#last = this.#first - 1;
  }

  #snapshotOps(s: Snapshot, file: SnapshotFileInfo | null): BatchOp[] {
    const meta: StoredSnapshotMeta = { ...s.metadata, file: file?.file ?? null, ...(file ? { bytes: file.bytes, sha256: file.sha256 } : {}) };
    const ops: BatchOp[] = [{ type: 'put', key: SNAPSHOT_META_KEY, value: encoder.encode(JSON.stringify(meta)) }];
    if (this.#legacyData) ops.push({ type: 'del', key: LEGACY_SNAPSHOT_DATA_KEY });
    return ops;
  }

  async #replaceFile(file: SnapshotFileInfo | null): Promise<void> {
    this.#legacyData = false;
    const old = this.#snapshotFile;
    this.#snapshotFile = file?.file ?? null;
    if (old !== null && old !== this.#snapshotFile) await this.#disk.unlink(old).catch(() => {});
  }

  get snapshotFile(): string | null {
    return this.#snapshotFile;
  }

  get persistedRange(): { first: number; last: number } {
    return { first: this.#first, last: this.#last };
  }

  async close(): Promise<void> {
    while (this.#writing.size > 0) await Promise.all(this.#writing);
    await this.#serial;
  }

  async #write(ops: BatchOp[], sync = true): Promise<void> {
    try {
      await this.#disk.write(ops, sync);
    } catch (err) {
      const message = String((err as Error)?.message);
      const code = /no space/i.test(message) ? 'ERR_NO_SPACE' : 'ERR_IO';
      throw new DfsError(code, `cannot persist the raft log: ${message}`, { cause: err });
    }
  }
}
