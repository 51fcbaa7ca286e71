import { constants as fsc } from 'node:fs';
import { open as openFile, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { DfsError } from '../errors/index.ts';
import { ALIGN_BYTES, alignedBuffers, isEinval, roundUp, writeFully } from '../diskio/index.ts';

const MiB = 1024 * 1024;

export interface ChunkFileWriterOptions {
  /** Write with O_DIRECT where the filesystem allows it. Default true. */
  readonly directIo?: boolean;
  /** Largest chunk written directly (larger ones go through the page cache). Default 8 MiB. */
  readonly slotBytes?: number;
  /** Direct writes at once (more wait for nobody: they go through the page cache). Default 8. */
  readonly slots?: number;
  /** Opens files; the filesystem's (tests pass one that refuses O_DIRECT). */
  readonly open?: (path: string, flags: number, mode: number) => Promise<FileHandle>;
}

/**
 * Writes a chunk file durably (written and fsynced; the caller renames it into place), with
 * direct I/O (O_DIRECT) where the filesystem allows it, else through the page cache.
 *
 * Why direct: a chunk is fsynced the moment it is written and is rarely read back soon, so the
 * page cache only adds work: a copy into freshly allocated cache pages, then their writeback.
 * Measured here (a VM whose freed memory goes back to its host, so every new cache page also
 * faults on the host): a storage node receiving puts spent 1.6-3.8 s of system CPU per GiB with
 * buffered writes and 0.9-1.1 s with direct ones, and 512 MiB RF 3 puts on the local cluster
 * took 7.1-8.5 s (14 puts) instead of 8.9-11.2 s (9 puts).
 *
 * The bytes are copied into a page-aligned staging slot (WebAssembly memory starts on a page
 * boundary, and slots sit at multiples of 4 KiB), padded with zeros to a multiple of 4 KiB,
 * written at offset 0, and the file is truncated to the chunk's size before the fsync, which
 * makes data and size durable together. A chunk larger than a slot, or one that finds every
 * slot busy, goes through the page cache; so does every write once the filesystem refused
 * O_DIRECT (EINVAL: a filesystem without it), which is remembered.
 */
export class ChunkFileWriter {
  readonly #idle: Uint8Array[] = [];
  readonly #slotBytes: number;
  readonly #open: (path: string, flags: number, mode: number) => Promise<FileHandle>;
  #direct: boolean;

  constructor(options: ChunkFileWriterOptions = {}) {
    this.#open = options.open ?? openFile;
    this.#slotBytes = options.slotBytes ?? 8 * MiB;
    const slotCount = options.slots ?? 8;
    if (!Number.isSafeInteger(slotCount) || slotCount < 1) throw new DfsError('ERR_INVALID_ARGUMENT', `slots must be a positive integer, got ${slotCount}`);
    const slots = (options.directIo ?? true) && fsc.O_DIRECT !== undefined ? alignedBuffers(slotCount, this.#slotBytes) : undefined;
    this.#direct = slots !== undefined;
    this.#idle.push(...(slots ?? []));
  }

  /** Whether writes still go direct (false when turned off, or once the filesystem refused). */
  get direct(): boolean {
    return this.#direct;
  }

  /** Creates `path` (it must not exist) holding the concatenated `pieces` (`size` bytes), fsynced. */
  async write(path: string, pieces: readonly Uint8Array[], size: number): Promise<void> {
    const slot = this.#direct && size <= this.#slotBytes ? this.#idle.pop() : undefined;
    if (slot) {
      try {
        if (await this.#writeDirect(path, pieces, size, slot)) return;
      } finally {
        this.#idle.push(slot);
      }
    }
    await this.#writeBuffered(path, pieces, size);
  }

  /**
   * Starts writing `path` (it must not exist), a file of `size` bytes that arrive in pieces:
   * `append` them in order (exactly `size` bytes in all), then `finish()` writes what is left and
   * fsyncs; `discard()` instead removes the file. Direct where `write` would be: the pieces are
   * copied into a staging slot as they come (none is kept) and written out in aligned runs of
   * at least FLUSH_BYTES while more arrive, so a large chunk is mostly written by its last byte.
   * Otherwise each piece is written through the page cache as it comes (kept until written).
   */
  async begin(path: string, size: number): Promise<ChunkFileSink> {
    const slot = this.#direct && size <= this.#slotBytes ? this.#idle.pop() : undefined;
    if (slot) {
      const fh = await this.#openDirect(path).catch((err: unknown) => {
        this.#idle.push(slot);
        throw err;
      });
      if (fh !== undefined) {
        return new DirectSink(fh, path, size, slot, {
          release: () => this.#idle.push(slot),
          refused: () => {
            this.#direct = false;
          },
          fallback: (bytes) => this.#writeBuffered(path, [bytes], size),
        });
      }
      this.#idle.push(slot); // refused O_DIRECT: through the page cache below
    }
    return new BufferedSink(await this.#open(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644), path, size);
  }

  /**
   * Creates `path` for direct writes; undefined when the filesystem refused O_DIRECT (EINVAL):
   * then `path` does not exist, and later writes go through the page cache.
   */
  async #openDirect(path: string): Promise<FileHandle | undefined> {
    try {
      return await this.#open(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_DIRECT, 0o644);
    } catch (err) {
      if (!isEinval(err)) throw err;
      // Linux may create the file before it checks for O_DIRECT support: leave the path free.
      await unlink(path).catch((unlinkError: NodeJS.ErrnoException) => {
        if (unlinkError.code !== 'ENOENT') throw unlinkError;
      });
      this.#direct = false;
      return undefined;
    }
  }

  /** False when the filesystem refused direct I/O: then `path` does not exist, and later writes go through the page cache. */
  async #writeDirect(path: string, pieces: readonly Uint8Array[], size: number, slot: Uint8Array): Promise<boolean> {
    let at = 0;
    for (const piece of pieces) {
      slot.set(piece, at);
      at += piece.byteLength;
    }
    const padded = roundUp(size, ALIGN_BYTES);
    slot.fill(0, size, padded);
    const fh = await this.#openDirect(path);
    if (fh === undefined) return false;
    let refused = false;
    try {
      // A short write is followed by the rest (a misaligned rest is refused: EINVAL, below).
      await writeFully(fh, slot, padded, 0);
      await fh.truncate(size);
      await fh.sync();
    } catch (err) {
      if (!isEinval(err)) throw err;
      refused = true;
    } finally {
      await fh.close();
    }
    if (refused) {
      this.#direct = false;
      await unlink(path);
    }
    return !refused;
  }

  async #writeBuffered(path: string, pieces: readonly Uint8Array[], size: number): Promise<void> {
    const fh = await this.#open(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
    try {
      const done = pieces.length > 0 ? (await fh.writev(pieces as Uint8Array[], 0)).bytesWritten : 0;
      // A writev that stopped short (libuv reports the bytes written, not the error that stopped
      // it: a full disk, a file-size limit) goes on piece by piece, which surfaces that error.
      for (let i = 0, at = 0; i < pieces.length && done < size; at += pieces[i]!.byteLength, i++) {
        const from = Math.max(0, done - at);
        if (from < pieces[i]!.byteLength) await writeFully(fh, pieces[i]!.subarray(from), pieces[i]!.byteLength - from, at + from);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}

/**
 * Bytes a direct sink gathers before it writes them out (a multiple of ALIGN_BYTES). Each direct
 * write waits for the device: with 256 KiB runs a 1 MiB chunk cost its node 0.5 CPU s/GiB more
 * than one write (bench/store-stream.ts, this VM); with 1 MiB the same as one write, while a large
 * chunk is still mostly written before its last byte comes.
 */
const FLUSH_BYTES = 1024 * 1024;

/** A chunk file being written as its bytes arrive (ChunkFileWriter.begin). */
export interface ChunkFileSink {
  /** Adds the next bytes. Never throws for I/O: a failed write surfaces from `finish`. */
  append(bytes: Uint8Array): void;
  /** Writes the rest, fsyncs and closes: the file then holds exactly the appended bytes, durably. */
  finish(): Promise<void>;
  /** Closes and removes the file (after any write under way). Idempotent; never throws. */
  discard(): Promise<void>;
}

/** Writes one after another, the first failure kept (and the writes after it skipped). */
class WriteChain {
  #tail: Promise<void> = Promise.resolve();
  #failure: unknown;

  add(write: () => Promise<void>): void {
    this.#tail = this.#tail.then(async () => {
      if (this.#failure !== undefined) return;
      try {
        await write();
      } catch (err) {
        this.#failure = err ?? new Error('write failed');
      }
    });
  }

  /** Waits for every write added; throws the first failure. */
  async settle(): Promise<void> {
    await this.#tail;
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Waits for every write added, ignoring failures. */
  drain(): Promise<void> {
    return this.#tail;
  }
}

interface DirectSinkHooks {
  /** Gives the slot back (once, when the sink is done with it). */
  release(): void;
  /** The filesystem refused a direct write (EINVAL): later files go through the page cache. */
  refused(): void;
  /** Writes the whole chunk through the page cache instead (the direct file already removed). */
  fallback(bytes: Uint8Array): Promise<void>;
}

/**
 * What both sinks share: the order of calls (appends of `size` bytes in all, then finish, or a
 * discard at any time) and the discard itself; a subclass writes.
 */
abstract class SinkBase implements ChunkFileSink {
  protected readonly fh: FileHandle;
  protected readonly path: string;
  protected readonly size: number;
  protected readonly writes = new WriteChain();
  /** Bytes appended so far. */
  protected appended = 0;
  #done = false;

  constructor(fh: FileHandle, path: string, size: number) {
    this.fh = fh;
    this.path = path;
    this.size = size;
  }

  append(bytes: Uint8Array): void {
    if (this.#done) throw new DfsError('ERR_INTERNAL', `${this.path}: append after the file was finished or discarded`);
    if (this.appended + bytes.byteLength > this.size) {
      throw new DfsError('ERR_INTERNAL', `${this.path}: ${this.appended + bytes.byteLength} bytes appended to a ${this.size}-byte chunk file`);
    }
    const at = this.appended;
    this.appended += bytes.byteLength;
    this.take(bytes, at);
  }

  finish(): Promise<void> {
    if (this.#done) return Promise.reject(new DfsError('ERR_INTERNAL', `${this.path}: finished twice, or after a discard`));
    if (this.appended !== this.size) return Promise.reject(new DfsError('ERR_INTERNAL', `${this.path}: finished after ${this.appended} of ${this.size} bytes`));
    this.#done = true;
    return this.complete();
  }

  async discard(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.writes.drain();
    await this.fh.close().catch(() => {});
    await unlink(this.path).catch(() => {});
    this.discarded();
  }

  /** The appended bytes `bytes`, at offset `at` of the file. */
  protected abstract take(bytes: Uint8Array, at: number): void;
  /** Writes what is left, fsyncs and closes (every byte appended). */
  protected abstract complete(): Promise<void>;
  /** After a discard removed the file. */
  protected discarded(): void {}
}

/** A direct (O_DIRECT) sink: bytes gathered in an aligned slot, written in aligned runs as they fill. */
class DirectSink extends SinkBase {
  readonly #slot: Uint8Array;
  readonly #hooks: DirectSinkHooks;
  /** Bytes handed to a write so far (a multiple of ALIGN_BYTES). */
  #flushed = 0;

  constructor(fh: FileHandle, path: string, size: number, slot: Uint8Array, hooks: DirectSinkHooks) {
    super(fh, path, size);
    this.#slot = slot;
    this.#hooks = hooks;
  }

  protected take(bytes: Uint8Array, at: number): void {
    this.#slot.set(bytes, at);
    // Whole aligned runs are written while the rest arrives; the slot's bytes there stay as they are.
    const ready = this.appended - (this.appended % ALIGN_BYTES);
    if (ready - this.#flushed >= FLUSH_BYTES) this.#flush(ready);
  }

  #flush(to: number): void {
    const from = this.#flushed;
    this.#flushed = to;
    this.writes.add(() => writeFully(this.fh, this.#slot.subarray(from, to), to - from, from));
  }

  protected async complete(): Promise<void> {
    const padded = roundUp(this.size, ALIGN_BYTES);
    this.#slot.fill(0, this.size, padded);
    if (padded > this.#flushed) this.#flush(padded);
    let refused = false;
    try {
      await this.writes.settle();
      // Data and size become durable together.
      await this.fh.truncate(this.size);
      await this.fh.sync();
    } catch (err) {
      if (!isEinval(err)) {
        await this.fh.close().catch(() => {});
        this.#hooks.release();
        throw err;
      }
      refused = true;
    }
    try {
      await this.fh.close();
      if (refused) {
        // The filesystem took O_DIRECT at open but refused a write: every byte is still in the
        // slot, so the chunk goes through the page cache instead, and so do later ones.
        this.#hooks.refused();
        await unlink(this.path);
        await this.#hooks.fallback(this.#slot.subarray(0, this.size));
      }
    } finally {
      this.#hooks.release();
    }
  }

  protected override discarded(): void {
    this.#hooks.release();
  }
}

/** A sink through the page cache: each piece written at its offset as it comes. */
class BufferedSink extends SinkBase {
  protected take(bytes: Uint8Array, at: number): void {
    if (bytes.byteLength > 0) this.writes.add(() => writeFully(this.fh, bytes, bytes.byteLength, at));
  }

  protected async complete(): Promise<void> {
    try {
      await this.writes.settle();
      await this.fh.sync();
    } finally {
      await this.fh.close();
    }
  }
}
