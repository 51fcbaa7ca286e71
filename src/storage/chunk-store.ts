import { constants as fsc } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { assertChunkId, type Blake3, type ChunkId, CHUNKER_LIMITS, isChunkId } from '../chunker/index.ts';
import { DfsError, fromSystemError } from '../errors/index.ts';
import { ChunkFileWriter } from './chunk-file-writer.ts';
import type { ChunkFileSink } from './chunk-file-writer.ts';
import { assertFence, DeleteFences } from './delete-fences.ts';
import { StoreLayout } from './layout.ts';
import { CHUNK_KEY_PREFIX, type ChunkRecord, chunkKey, decodeRecord, encodeRecord, STATE_KEY } from './index-record.ts';

export interface ChunkStoreOptions {
  readonly dir: string;
  readonly blake3: Blake3;
  /** Largest chunk accepted. Default: the chunker's ceiling (64 MiB). */
  readonly maxChunkBytes?: number;
  /**
   * Free space a put must leave behind, so the index (LevelDB) can always write and compact.
   * A put that would go below it fails with ERR_NO_SPACE before writing. Default 16 MiB.
   */
  readonly reserveBytes?: number;
  readonly clock?: () => number;
  /** Write chunk files with O_DIRECT where the filesystem allows it (ChunkFileWriter). Default true. */
  readonly directIo?: boolean;
  /** The put fences that guard fenced deletes (see DeleteFences). Default: a new one, floor unknown. */
  readonly fences?: DeleteFences;
  /**
   * A put finding its chunk already stored trusts the file without hashing it again when it was
   * verified (written, or checked) within this many ms; an older one is read and hashed. Its
   * existence and length are always checked. Default 10 minutes.
   */
  readonly trustVerifiedMs?: number;
}

export interface StorePutOptions {
  /** The caller hashed exactly these bytes against the id itself: the store does not hash them again. */
  readonly alreadyVerified?: boolean;
  /** The put's fence (see DeleteFences): recorded, under the id's lock, whether or not the chunk was already here. */
  readonly fence?: number;
}

export interface StoreDeleteOptions {
  /**
   * The delete's fence: the chunk is kept when a put with a larger fence was accepted (or the
   * floor is unknown or not below it). Without one the delete is unconditional (local use only).
   */
  readonly fence?: number;
}

/** What a delete did: removed the chunk, found none, or kept it because of its fence. */
export type DeleteOutcome = 'deleted' | 'absent' | 'kept';

/**
 * What `verifyOrQuarantine` found: the chunk good (its verification time recorded), bad (missing,
 * short, unreadable or corrupt: moved to quarantine and reported removed), or not listed at all.
 */
export type VerifyOutcome = 'verified' | 'quarantined' | 'absent';

export interface PutResult {
  /** False when the chunk was already stored, whole (deduplicated); true when this put wrote it. */
  readonly stored: boolean;
}

export interface ChunkListing extends ChunkRecord {
  readonly id: ChunkId;
}

export interface ChunkStoreStats {
  readonly chunks: number;
  readonly bytes: number;
  readonly freeBytes: number;
  readonly totalBytes: number;
}

export interface RecoveryReport {
  /** The previous process did not close the store (crash, kill); false for a new store. */
  readonly wasDirty: boolean;
  readonly tempFilesSwept: number;
  /** Whole, verified chunk files found without an index entry, and indexed. */
  readonly orphansAdopted: number;
  /** Files under chunks/ that were not valid chunks, removed. */
  readonly orphansRemoved: number;
  /** Index entries whose file was missing, removed. */
  readonly entriesDropped: number;
}

type Db = ClassicLevel<string, Uint8Array>;

const DEFAULT_TRUST_VERIFIED_MS = 10 * 60_000;

/**
 * A node's durable chunk store: payload files plus a LevelDB index.
 *
 * Durability: a chunk is acknowledged only after its bytes were written to a temp file (directly,
 * bypassing the page cache, where the filesystem allows: ChunkFileWriter), fsynced,
 * renamed to their final name and the directory fsynced (Kubo's flatfs), so no half-written
 * chunk ever has a final name. The index is a cache of the files: it is written without sync,
 * and after any unclean stop `open` reconciles it with the files (the clean-shutdown mark tells
 * which). Every chunk is verified against its BLAKE3 id before it is stored, and by default when
 * it is read. One process owns a store at a time (LevelDB's lock).
 */
export class ChunkStore {
  readonly layout: StoreLayout;
  readonly recovery: RecoveryReport;
  /** Put fences that guard fenced deletes; the node raises its floor (see DeleteFences). */
  readonly fences: DeleteFences;
  readonly #db: Db;
  readonly #blake3: Blake3;
  readonly #maxChunkBytes: number;
  readonly #reserveBytes: number;
  readonly #clock: () => number;
  readonly #trustVerifiedMs: number;
  readonly #writer: ChunkFileWriter;
  /** The last mutation (put or delete) queued per chunk id: they run one at a time per id. */
  readonly #idLocks = new Map<ChunkId, Promise<unknown>>();
  readonly #knownShards = new Set<string>();
  readonly #pending = new Set<Promise<unknown>>();
  #tmpCounter = 0;
  #quarantineCounter = 0;
  /** Free bytes at the last statfs, when it was taken, and bytes written since. */
  #space = { freeBytes: 0, atMs: -Infinity, writtenSince: 0 };
  /**
   * Bytes of streamed puts begun and not yet committed or aborted (beginPut): counted against
   * the free space apart from `writtenSince`, which a statfs resets, because their bytes may
   * reach the disk long after the check (a put's whole transfer).
   */
  #pendingBytes = 0;
  #chunks: number;
  #bytes: number;
  #closed = false;
  readonly #listeners = new Set<(id: ChunkId, change: 'added' | 'removed') => void>();

  private constructor(init: {
    layout: StoreLayout;
    db: Db;
    options: ChunkStoreOptions;
    recovery: RecoveryReport;
    chunks: number;
    bytes: number;
  }) {
    this.layout = init.layout;
    this.#db = init.db;
    this.recovery = init.recovery;
    this.#blake3 = init.options.blake3;
    this.#maxChunkBytes = init.options.maxChunkBytes ?? CHUNKER_LIMITS.maxSizeCeiling;
    this.#reserveBytes = init.options.reserveBytes ?? 16 * 1024 * 1024;
    this.#clock = init.options.clock ?? Date.now;
    this.#trustVerifiedMs = init.options.trustVerifiedMs ?? DEFAULT_TRUST_VERIFIED_MS;
    this.fences = init.options.fences ?? new DeleteFences();
    this.#writer = new ChunkFileWriter({ directIo: init.options.directIo ?? true });
    this.#chunks = init.chunks;
    this.#bytes = init.bytes;
  }

  /** Whether chunk files are written with direct I/O (see ChunkFileWriter). */
  get directWrites(): boolean {
    return this.#writer.direct;
  }

  /** Calls `listener` after every chunk that becomes stored or stops being stored (reports). */
  onChange(listener: (id: ChunkId, change: 'added' | 'removed') => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  static async open(options: ChunkStoreOptions): Promise<ChunkStore> {
    const layout = new StoreLayout(options.dir);
    try {
      await mkdir(layout.tmpDir, { recursive: true });
      await mkdir(layout.quarantineDir, { recursive: true });
      if ((await mkdir(layout.chunksDir, { recursive: true })) !== undefined) await createOuterShards(layout);
    } catch (err) {
      throw fromSystemError(err, `cannot create chunk store in ${options.dir}`);
    }
    const db: Db = new ClassicLevel(layout.indexDir, { keyEncoding: 'utf8', valueEncoding: 'view' });
    try {
      await db.open();
    } catch (err) {
      const locked = /lock/i.test(String((err as Error)?.cause ?? err));
      throw new DfsError('ERR_IO', locked ? `chunk store ${options.dir} is in use by another process` : `cannot open the chunk index in ${layout.indexDir}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const state = decodeState(await db.get(STATE_KEY));
      const recovery = await recover(layout, db, options.blake3, state, options.clock ?? Date.now);
      const { chunks, bytes } = await countIndex(db);
      // Marked open (synced) before any write: a crash from now on is seen at the next open.
      await db.put(STATE_KEY, encodeState('open'), { sync: true });
      return new ChunkStore({ layout, db, options, recovery, chunks, bytes });
    } catch (err) {
      await db.close().catch(() => {});
      throw fromSystemError(err, `cannot open chunk store ${options.dir}`);
    }
  }

  /**
   * Stores a chunk after checking its bytes hash to `id`. Idempotent; safe to call concurrently.
   * `alreadyVerified`: the caller hashed exactly these bytes against `id` itself (a pipeline
   * node hashes while it forwards), so the store does not hash them a second time.
   * `fence`: noted under the id's lock whether or not the chunk was already stored, so a fenced
   * delete queued after this put cannot remove what it acknowledges (see DeleteFences).
   * A chunk the index already lists is not trusted blindly: when its file is missing, of the
   * wrong length, or (not verified within `trustVerifiedMs`) does not hash to its id, it is
   * written again from these bytes. An acknowledged put always leaves a good file.
   */
  put(id: ChunkId, data: Uint8Array | readonly Uint8Array[], options: StorePutOptions = {}): Promise<PutResult> {
    return this.#track(async () => {
      this.#assertOpen();
      assertChunkId(id);
      const { fence } = options;
      if (fence !== undefined) assertFence(fence);
      const pieces = data instanceof Uint8Array ? [data] : data;
      const size = pieces.reduce((n, p) => n + p.length, 0);
      if (size > this.#maxChunkBytes) {
        throw new DfsError('ERR_CHUNK_TOO_LARGE', `chunk ${id} has ${size} bytes; the limit is ${this.#maxChunkBytes}`);
      }
      const actual = options.alreadyVerified ? id : this.#blake3.hashHex(pieces);
      if (actual !== id) {
        throw new DfsError('ERR_CHUNK_CORRUPT', `chunk bytes hash to ${actual}, not to their id ${id}`);
      }
      // A second put of the same chunk waits for the first and then finds it stored (dedup).
      return this.#exclusive(id, () => this.#putLocked(id, pieces, size, fence));
    });
  }

  /**
   * Starts a put whose bytes arrive in pieces (a node receiving a chunk): each `append`ed piece
   * goes to a temp file as it comes (see ChunkFileWriter.begin), so nothing waits for the last
   * byte to start writing and no piece is kept. The caller hashes the same pieces and calls
   * `commit()` only once they hash to `id` (the store does not hash them again): it fsyncs the
   * file and then, under the id's lock, notes the fence, renames it into place (or drops it when
   * a good copy is already stored), fsyncs the directory and indexes it — what `put` does with
   * all its bytes at hand, and as durable. `abort()` (or a crash: the temp directory is swept at
   * open) leaves nothing. Refuses like `put`: ERR_CHUNK_TOO_LARGE, ERR_NO_SPACE, ERR_STORE_CLOSED.
   */
  beginPut(id: ChunkId, size: number, options: { readonly fence?: number } = {}): Promise<PendingPut> {
    return this.#track(async () => {
      this.#assertOpen();
      assertChunkId(id);
      const { fence } = options;
      if (fence !== undefined) assertFence(fence);
      if (!(Number.isSafeInteger(size) && size >= 0)) throw new DfsError('ERR_INVALID_ARGUMENT', `a chunk size must be a non-negative integer, got ${size}`);
      if (size > this.#maxChunkBytes) {
        throw new DfsError('ERR_CHUNK_TOO_LARGE', `chunk ${id} has ${size} bytes; the limit is ${this.#maxChunkBytes}`);
      }
      await this.#checkSpace(size, id, { pending: true });
      // The space this put holds until it commits or aborts (once, whichever comes).
      let held = true;
      const unhold = (): void => {
        if (held) this.#pendingBytes -= size;
        held = false;
      };
      const tmpPath = join(this.layout.tmpDir, `${id}.${process.pid}.${this.#tmpCounter++}`);
      let sink: ChunkFileSink;
      try {
        sink = await this.#writer.begin(tmpPath, size);
      } catch (err) {
        unhold();
        throw fromSystemError(err, `cannot store chunk ${id}`);
      }
      return new PendingChunkPut(sink, {
        commit: () => this.#track(() => this.#commitPending(id, size, fence, tmpPath, sink).finally(unhold)),
        abort: () => this.#track(() => sink.discard().finally(unhold)),
      });
    });
  }

  async #commitPending(id: ChunkId, size: number, fence: number | undefined, tmpPath: string, sink: ChunkFileSink): Promise<PutResult> {
    try {
      this.#assertOpen();
      await sink.finish(); // durable before the lock: the lock is held only for the rename
    } catch (err) {
      await sink.discard();
      await unlink(tmpPath).catch(() => {});
      throw fromSystemError(err, `cannot store chunk ${id}`);
    }
    return this.#exclusive(id, async () => {
      // Noted first, as in #putLocked: even a put that finds the chunk already stored acks it.
      if (fence !== undefined) this.fences.notePut(id, fence);
      try {
        const raw = await this.#db.get(chunkKey(id));
        const record = raw === undefined ? undefined : decodeRecord(raw);
        if (record !== undefined && (await this.#fileIsGood(id, size, record))) {
          await unlink(tmpPath);
          return { stored: false };
        }
        await this.#placeFile(id, tmpPath);
        // Held as pending until now; a statfs taken before these bytes landed does not see them.
        this.#space.writtenSince += size;
        await this.#index(id, size);
        if (record === undefined) this.#chunks += 1;
        this.#bytes += size - (record?.size ?? 0);
      } catch (err) {
        await unlink(tmpPath).catch(() => {});
        throw fromSystemError(err, `cannot store chunk ${id}`);
      }
      for (const listener of this.#listeners) listener(id, 'added');
      return { stored: true };
    });
  }

  /** Renames a written, fsynced temp file to the chunk's name and fsyncs its shard directory. */
  async #placeFile(id: ChunkId, tmpPath: string): Promise<void> {
    const shardDir = await this.#ensureShard(id);
    await rename(tmpPath, this.layout.chunkPath(id));
    await fsyncDir(shardDir);
  }

  /** Runs `op` after every earlier mutation of the same id has settled. */
  async #exclusive<T>(id: ChunkId, op: () => Promise<T>): Promise<T> {
    const previous = this.#idLocks.get(id);
    const run = (previous ?? Promise.resolve()).catch(() => {}).then(op);
    this.#idLocks.set(id, run);
    try {
      return await run;
    } finally {
      if (this.#idLocks.get(id) === run) this.#idLocks.delete(id);
    }
  }

  async #putLocked(id: ChunkId, pieces: readonly Uint8Array[], size: number, fence: number | undefined): Promise<PutResult> {
    // Noted before anything can fail or return: even a put that only finds the chunk acks it.
    if (fence !== undefined) this.fences.notePut(id, fence);
    const raw = await this.#db.get(chunkKey(id));
    const record = raw === undefined ? undefined : decodeRecord(raw);
    if (record !== undefined && (await this.#fileIsGood(id, size, record))) return { stored: false };
    // New, or listed with a missing, short or corrupt file (or an unreadable entry): write it.
    await this.#writeFile(id, pieces, size);
    await this.#index(id, size);
    // What the counts hold: every decodable entry (countIndex), so a rewrite only fixes the size.
    if (record === undefined) this.#chunks += 1;
    this.#bytes += size - (record?.size ?? 0);
    for (const listener of this.#listeners) listener(id, 'added');
    return { stored: true };
  }

  /**
   * Whether the file of a listed chunk is good: there, `size` bytes long (a stat), and hashing to
   * `id` unless it was verified within `trustVerifiedMs` (then a read and a hash, recorded).
   */
  async #fileIsGood(id: ChunkId, size: number, record: ChunkRecord): Promise<boolean> {
    const path = this.layout.chunkPath(id);
    if ((await fileSize(path)) !== size) return false;
    const now = this.#clock();
    if (now - record.verifiedAtMs <= this.#trustVerifiedMs) return true;
    // Any read failure (EIO...) is a bad file too: rewriting it from good bytes is the cure.
    const bytes = await readFile(path).catch(() => undefined);
    if (bytes === undefined || this.#blake3.hashHex(bytes) !== id) return false;
    await this.#db.put(chunkKey(id), encodeRecord({ ...record, verifiedAtMs: now })).catch(() => {}); // a cache: losing it costs a hash
    return true;
  }

  /** Writes the chunk's file durably: temp file, fsync, rename over the final name, fsync of the shard. */
  async #writeFile(id: ChunkId, pieces: readonly Uint8Array[], size: number): Promise<void> {
    await this.#checkSpace(size, id);
    const tmpPath = join(this.layout.tmpDir, `${id}.${process.pid}.${this.#tmpCounter++}`);
    const finalPath = this.layout.chunkPath(id);
    try {
      // The shard directory is made (and its parent fsynced) while the payload is written.
      const [shardDir] = await allSettledOrThrow([this.#ensureShard(id), this.#writer.write(tmpPath, pieces, size)]);
      await rename(tmpPath, finalPath);
      await fsyncDir(shardDir);
    } catch (err) {
      await unlink(tmpPath).catch(() => {});
      throw fromSystemError(err, `cannot store chunk ${id}`);
    }
  }

  async #index(id: ChunkId, size: number): Promise<void> {
    const now = this.#clock();
    try {
      await this.#db.put(chunkKey(id), encodeRecord({ size, storedAtMs: now, verifiedAtMs: now }));
    } catch (err) {
      // The file is durable; the index entry will be rebuilt at the next unclean open. Report
      // the failure rather than acknowledge a chunk the index cannot list.
      throw fromSystemError(err, `cannot index chunk ${id}`);
    }
  }
  /** The chunk's bytes, verified against its id unless `verify: false`. */
  get(id: ChunkId, options: { verify?: boolean } = {}): Promise<Uint8Array> {
    return this.#track(async () => {
      this.#assertOpen();
      assertChunkId(id);
      let bytes: Uint8Array;
      try {
        bytes = await readFile(this.layout.chunkPath(id));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new DfsError('ERR_CHUNK_NOT_FOUND', `chunk ${id} is not in this store`);
        }
        throw fromSystemError(err, `cannot read chunk ${id}`);
      }
      if (options.verify !== false) {
        const actual = this.#blake3.hashHex(bytes);
        if (actual !== id) {
          throw new DfsError('ERR_CHUNK_CORRUPT', `stored chunk ${id} is corrupt on disk (its bytes hash to ${actual})`);
        }
      }
      return bytes;
    });
  }

  /**
   * Reads and verifies a chunk and records when (the scrubber's primitive). A get verifies too
   * but records nothing, so reads never write to the index.
   */
  async verify(id: ChunkId): Promise<void> {
    await this.get(id);
    // Under the id's lock: a delete in between must not see its entry written back.
    await this.#track(() =>
      this.#exclusive(id, async () => {
        const raw = await this.#db.get(chunkKey(id));
        const record = raw && decodeRecord(raw);
        if (record) await this.#db.put(chunkKey(id), encodeRecord({ ...record, verifiedAtMs: this.#clock() }));
      }),
    );
  }

  /**
   * Re-hashes a listed chunk under its id's lock (the scrubber's step, and what a master's
   * "verify" asks for). 'verified' when its file is there, of the listed length, and hashes to its
   * id (the time is recorded, like `verify`). 'quarantined' when the file is missing, of another
   * length, unreadable (EIO) or corrupt: the file, if any, is moved out of the chunk tree into
   * quarantine/ (never served again; removed after a retention period, see sweepQuarantine), the
   * index entry is dropped and listeners hear 'removed' (the next heartbeat reports it, so the
   * leader copies the chunk again from a good replica). 'absent' when the store does not list it.
   * Under the lock, a put racing this check either ran before (and left a good file, verified
   * here) or runs after (and writes the chunk anew): a good file is never quarantined.
   */
  verifyOrQuarantine(id: ChunkId): Promise<VerifyOutcome> {
    return this.#track(async () => {
      this.#assertOpen();
      assertChunkId(id);
      return this.#exclusive(id, () => this.#verifyLocked(id));
    });
  }

  async #verifyLocked(id: ChunkId): Promise<VerifyOutcome> {
    const raw = await this.#db.get(chunkKey(id));
    if (raw === undefined) return 'absent';
    const record = decodeRecord(raw);
    let bytes: Uint8Array | undefined;
    try {
      bytes = await readFile(this.layout.chunkPath(id));
    } catch (err) {
      // Missing, or a bad sector: the file is bad. Anything else (EMFILE...) says nothing about it.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EIO' && code !== 'EISDIR') throw fromSystemError(err, `cannot read chunk ${id}`);
    }
    const good = bytes !== undefined && this.#blake3.hashHex(bytes) === id;
    if (good && record !== undefined && bytes!.byteLength === record.size) {
      await this.#db.put(chunkKey(id), encodeRecord({ ...record, verifiedAtMs: this.#clock() }));
      return 'verified';
    }
    if (good && record === undefined) {
      // A good file under an entry that does not decode: the entry is what is wrong.
      await this.#index(id, bytes!.byteLength);
      this.#chunks += 1;
      this.#bytes += bytes!.byteLength;
      return 'verified';
    }
    await this.#quarantineLocked(id, record);
    return 'quarantined';
  }

  /** Moves a bad chunk's file to quarantine/ and forgets the chunk (under its lock). */
  async #quarantineLocked(id: ChunkId, record: ChunkRecord | undefined): Promise<void> {
    const target = join(this.layout.quarantineDir, `${id}.${Math.floor(this.#clock())}.${this.#quarantineCounter++}`);
    // Index first, then the file (as delete does): a crash in between leaves an unindexed file
    // that the next open checks again (and removes, being bad), never an entry for a moved file.
    try {
      await this.#db.del(chunkKey(id));
      await rename(this.layout.chunkPath(id), target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, `cannot quarantine chunk ${id}`);
    }
    if (record !== undefined) {
      this.#chunks -= 1;
      this.#bytes -= record.size;
    }
    for (const listener of this.#listeners) listener(id, 'removed');
  }

  /**
   * Removes quarantined files older than `maxAgeMs` (by the store's clock, from the time they
   * were quarantined, which their names carry). Returns how many were removed.
   */
  sweepQuarantine(maxAgeMs: number): Promise<number> {
    return this.#track(async () => {
      this.#assertOpen();
      const cutoff = this.#clock() - maxAgeMs;
      let removed = 0;
      for (const name of await readdirOrEmpty(this.layout.quarantineDir)) {
        const at = Number(/^[0-9a-f]{64}\.(\d+)\.\d+$/.exec(name)?.[1]);
        if (!(at <= cutoff)) continue; // not ours (NaN), or too young
        await rm(join(this.layout.quarantineDir, name), { force: true, recursive: true });
        removed++;
      }
      return removed;
    });
  }

  /** The files in quarantine now (names `<id>.<ms>.<n>`). */
  async quarantined(): Promise<string[]> {
    this.#assertOpen();
    return (await readdirOrEmpty(this.layout.quarantineDir)).sort();
  }

  /**
   * Whether the chunk is stored: listed, and its file there with the listed length (a stat: the
   * index alone would vouch for a file removed or truncated behind the store's back).
   */
  async has(id: ChunkId): Promise<boolean> {
    this.#assertOpen();
    if (!isChunkId(id)) return false;
    const raw = await this.#db.get(chunkKey(id));
    const record = raw === undefined ? undefined : decodeRecord(raw);
    return record !== undefined && (await fileSize(this.layout.chunkPath(id))) === record.size;
  }

  /** The index record of a chunk, or undefined. */
  async info(id: ChunkId): Promise<ChunkRecord | undefined> {
    this.#assertOpen();
    assertChunkId(id);
    const raw = await this.#db.get(chunkKey(id));
    return raw === undefined ? undefined : decodeRecord(raw);
  }

  /**
   * Removes a chunk: 'deleted', or 'absent' when it was not stored. With a `fence`, the check and
   * the removal run under the id's lock, after every put queued before: 'kept' (nothing removed)
   * when a put with a larger fence was accepted, or the fence is not above the floor (see
   * DeleteFences). Without a fence the delete is unconditional: for local use, not for the GC.
   */
  delete(id: ChunkId, options: StoreDeleteOptions = {}): Promise<DeleteOutcome> {
    return this.#track(async () => {
      this.#assertOpen();
      assertChunkId(id);
      const { fence } = options;
      if (fence !== undefined) assertFence(fence);
      return this.#exclusive(id, () => this.#deleteLocked(id, fence));
    });
  }

  async #deleteLocked(id: ChunkId, fence: number | undefined): Promise<DeleteOutcome> {
    const raw = await this.#db.get(chunkKey(id));
    if (raw === undefined) return 'absent';
    if (fence !== undefined && !this.fences.mayDelete(id, fence)) return 'kept';
    // Index first, then file: a crash in between leaves a file that recovery re-adopts
    // (harmless, GC deletes it again) rather than an entry that lists a missing chunk.
    try {
      await this.#db.del(chunkKey(id));
      await unlink(this.layout.chunkPath(id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, `cannot delete chunk ${id}`);
    }
    // Only decodable entries are counted (countIndex, #putLocked).
    const record = decodeRecord(raw);
    if (record !== undefined) {
      this.#chunks -= 1;
      this.#bytes -= record.size;
    }
    for (const listener of this.#listeners) listener(id, 'removed');
    return 'deleted';
  }

  /**
   * Every stored chunk, in id order, streamed from the index; with `after`, only ids after it,
   * and with `limit`, at most that many (a caller that works slowly between entries pages
   * through the index rather than holding one iterator, and its snapshot, for long).
   */
  async *list(options: { readonly after?: string; readonly limit?: number } = {}): AsyncGenerator<ChunkListing> {
    this.#assertOpen();
    const range = options.after === undefined ? { gte: CHUNK_KEY_PREFIX } : { gt: chunkKey(options.after) };
    const limit = options.limit ?? -1;
    for await (const [key, value] of this.#db.iterator({ ...range, lt: CHUNK_KEY_PREFIX + '\xff', limit })) {
      const record = decodeRecord(value);
      if (record) yield { id: key.slice(CHUNK_KEY_PREFIX.length), ...record };
    }
  }

  async stats(): Promise<ChunkStoreStats> {
    this.#assertOpen();
    const fs = await statfs(this.layout.root);
    return { chunks: this.#chunks, bytes: this.#bytes, freeBytes: fs.bavail * fs.bsize, totalBytes: fs.blocks * fs.bsize };
  }

  /** Waits for operations under way, marks the store clean and closes it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#pending]);
    try {
      await this.#db.put(STATE_KEY, encodeState('clean'), { sync: true });
    } finally {
      await this.#db.close();
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new DfsError('ERR_STORE_CLOSED', `chunk store ${this.layout.root} is closed`);
  }

  #track<T>(op: () => Promise<T>): Promise<T> {
    const p = op();
    this.#pending.add(p);
    const forget = () => this.#pending.delete(p);
    p.then(forget, forget);
    return p;
  }

  /**
   * Refuses a put that would leave less than the reserve. statfs is taken at most once a second
   * (or when the estimate comes near the reserve); in between, bytes written are subtracted.
   */
  async #checkSpace(size: number, id: ChunkId, options: { readonly pending?: boolean } = {}): Promise<void> {
    const space = this.#space;
    const now = performance.now();
    let free = space.freeBytes - space.writtenSince - this.#pendingBytes;
    if (now - space.atMs > 1000 || free - size < 2 * this.#reserveBytes + size) {
      try {
        const fs = await statfs(this.layout.root);
        this.#space = { freeBytes: fs.bavail * fs.bsize, atMs: now, writtenSince: 0 };
      } catch (err) {
        throw fromSystemError(err, `cannot check free space for chunk ${id}`);
      }
      // Streamed puts under way still count: statfs sees at most the part they wrote so far.
      free = this.#space.freeBytes - this.#pendingBytes;
    }
    if (free - size < this.#reserveBytes) {
      throw new DfsError('ERR_NO_SPACE', `no space for chunk ${id} (${size} bytes): ${free} bytes free, ${this.#reserveBytes} reserved`);
    }
    // Counted only once admitted: a refused put takes nothing.
    if (options.pending) this.#pendingBytes += size;
    else this.#space.writtenSince += size;
  }

  async #ensureShard(id: ChunkId): Promise<string> {
    const [outer, inner] = this.layout.shardDirs(id);
    if (this.#knownShards.has(inner)) return inner;
    // mkdir then fsync the parent of each created directory, so that the directory entry of a
    // new shard is as durable as the chunk renamed into it. Outer shards (256) are remembered
    // too: in a young store nearly every chunk makes a new inner one (65,536 of them).
    if (!this.#knownShards.has(outer)) {
      if ((await mkdir(outer, { recursive: true })) !== undefined) await fsyncDir(this.layout.chunksDir);
      this.#knownShards.add(outer);
    }
    if ((await mkdir(inner, { recursive: true })) !== undefined) await fsyncDir(outer);
    this.#knownShards.add(inner);
    return inner;
  }
}

/** A put under way (ChunkStore.beginPut): append its bytes, then commit or abort. */
export interface PendingPut {
  /** Adds the next bytes (in order; `size` in all). A failed write surfaces from `commit`. */
  append(bytes: Uint8Array): void;
  /**
   * Stores the appended bytes as the chunk, durably; call only once they hash to its id. On
   * failure nothing is left behind. At most once, and not after `abort`.
   */
  commit(): Promise<PutResult>;
  /** Drops the put and its temp file. Idempotent; a no-op after commit. Never throws. */
  abort(): Promise<void>;
}

class PendingChunkPut implements PendingPut {
  readonly #sink: ChunkFileSink;
  readonly #ops: { commit(): Promise<PutResult>; abort(): Promise<void> };
  #state: 'open' | 'committing' | 'aborted' = 'open';

  constructor(sink: ChunkFileSink, ops: { commit(): Promise<PutResult>; abort(): Promise<void> }) {
    this.#sink = sink;
    this.#ops = ops;
  }

  append(bytes: Uint8Array): void {
    if (this.#state !== 'open') throw new DfsError('ERR_INTERNAL', `append to a put that was ${this.#state === 'aborted' ? 'aborted' : 'committed'}`);
    this.#sink.append(bytes);
  }

  commit(): Promise<PutResult> {
    if (this.#state !== 'open') return Promise.reject(new DfsError('ERR_INTERNAL', `commit of a put that was ${this.#state === 'aborted' ? 'aborted' : 'committed'}`));
    this.#state = 'committing';
    return this.#ops.commit();
  }

  async abort(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'aborted';
    await this.#ops.abort().catch(() => {});
  }
}

type StoreState = 'open' | 'clean';

function encodeState(state: StoreState): Uint8Array {
  return new TextEncoder().encode(state);
}

function decodeState(raw: Uint8Array | undefined): string | undefined {
  return raw === undefined ? undefined : new TextDecoder().decode(raw);
}

/**
 * A new store gets its 256 outer shard directories up front (a put then creates at most the
 * inner one): measured, a put that must create and fsync two directories runs ~25% slower.
 */
async function createOuterShards(layout: StoreLayout): Promise<void> {
  for (let i = 0; i < 256; i++) await mkdir(join(layout.chunksDir, i.toString(16).padStart(2, '0')), { recursive: true });
  await fsyncDir(layout.chunksDir);
  await fsyncDir(layout.root);
}

/** Like Promise.all, but waits for every promise to settle before throwing the first error. */
async function allSettledOrThrow<T extends readonly unknown[]>(promises: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function countIndex(db: Db): Promise<{ chunks: number; bytes: number }> {
  let chunks = 0;
  let bytes = 0;
  for await (const value of db.values({ gte: CHUNK_KEY_PREFIX, lt: CHUNK_KEY_PREFIX + '\xff' })) {
    const record = decodeRecord(value);
    if (record) {
      chunks += 1;
      bytes += record.size;
    }
  }
  return { chunks, bytes };
}

/**
 * Makes the index agree with the files after an unclean stop. The temp directory is always
 * emptied; the full walk of chunks/ runs only when the store was not closed cleanly.
 */
async function recover(
  layout: StoreLayout,
  db: Db,
  blake3: Blake3,
  state: string | undefined,
  clock: () => number,
): Promise<RecoveryReport> {
  const wasDirty = state === 'open';
  let tempFilesSwept = 0;
  for (const name of await readdir(layout.tmpDir)) {
    await rm(join(layout.tmpDir, name), { force: true, recursive: true });
    tempFilesSwept += 1;
  }
  let orphansAdopted = 0;
  let orphansRemoved = 0;
  let entriesDropped = 0;
  // A new (or lost) index is rebuilt from the files the same way as after a crash.
  if (state !== 'clean') {
    for await (const { id, path } of walkChunkFiles(layout)) {
      if (isChunkId(id) && (await db.get(chunkKey(id))) !== undefined) continue;
      // Renamed into place only after fsync, so an unindexed chunk file is whole; verify anyway.
      const bytes = isChunkId(id) && path === layout.chunkPath(id) ? await readFile(path) : undefined;
      if (bytes && blake3.hashHex(bytes) === id) {
        const now = clock();
        await db.put(chunkKey(id), encodeRecord({ size: bytes.length, storedAtMs: now, verifiedAtMs: now }));
        orphansAdopted += 1;
      } else {
        await rm(path, { force: true, recursive: true });
        orphansRemoved += 1;
      }
    }
    const missing: string[] = [];
    for await (const key of db.keys({ gte: CHUNK_KEY_PREFIX, lt: CHUNK_KEY_PREFIX + '\xff' })) {
      const id = key.slice(CHUNK_KEY_PREFIX.length);
      if (!isChunkId(id) || !(await exists(layout.chunkPath(id)))) missing.push(key);
    }
    for (const key of missing) await db.del(key);
    entriesDropped = missing.length;
  }
  return { wasDirty, tempFilesSwept, orphansAdopted, orphansRemoved, entriesDropped };
}

async function* walkChunkFiles(layout: StoreLayout): AsyncGenerator<{ id: string; path: string }> {
  for (const outer of await readdir(layout.chunksDir)) {
    const outerPath = join(layout.chunksDir, outer);
    for (const inner of await readdirOrEmpty(outerPath)) {
      const innerPath = join(outerPath, inner);
      for (const name of await readdirOrEmpty(innerPath)) yield { id: name, path: join(innerPath, name) };
    }
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR' || (err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** The size of the regular file at `path`; undefined when there is none (or it cannot be stat'ed). */
async function fileSize(path: string): Promise<number | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : undefined;
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await (await open(path, fsc.O_RDONLY)).close();
    return true;
  } catch {
    return false;
  }
}
