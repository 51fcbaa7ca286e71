import { DfsError } from '../errors/index.ts';
import type { Blake3, Blake3Hasher } from './blake3.ts';
import type { ChunkId } from './chunk-id.ts';
import { CutScanner } from './cut.ts';
import { type ChunkerParams, DEFAULT_CHUNKER_PARAMS } from './params.ts';

export interface Chunk {
  /** Offset of the chunk's first byte in the whole input. */
  readonly offset: number;
  readonly length: number;
  readonly id: ChunkId;
  /**
   * The chunk's bytes as views of the input reads, in order: no copy. Writers take them as they
   * are (`writev`, one network send each).
   */
  readonly pieces: readonly Uint8Array[];
  /** The bytes in one buffer: a view when the chunk lay in one read, else copied once on demand. */
  readonly bytes: Uint8Array;
}

export interface ChunkStreamOptions {
  readonly blake3: Blake3;
  readonly params?: ChunkerParams;
}

/**
 * Cuts a stream of buffers into content-defined chunks and names each by its BLAKE3 hash.
 *
 * Reads are scanned where they lie (no copy to scan) and hashed piece by piece as they are
 * scanned, so the bytes are read once while hot in cache. Memory held: the pieces of the current
 * chunk (at most `maxSize` bytes) plus the read being scanned. Chunks are yielded as views of the
 * reads, never copied unless a consumer asks for `bytes` of a chunk that spans reads. The source
 * must not reuse a buffer after yielding it (Node's streams never do).
 */
export async function* chunkStream(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: ChunkStreamOptions,
): AsyncGenerator<Chunk> {
  const scanner = new CutScanner(options.params ?? DEFAULT_CHUNKER_PARAMS);
  const hasher = await options.blake3.createHasher();
  const pending = new PendingChunk(hasher);
  let offset = 0;
  for await (const read of source) {
    if (!(read instanceof Uint8Array)) {
      throw new DfsError('ERR_INVALID_ARGUMENT', `chunker input must be bytes, got ${typeof read}`);
    }
    let from = 0;
    while (from < read.length) {
      const found = scanner.scan(read, from, read.length);
      const to = found === -1 ? read.length : found;
      pending.add(read.subarray(from, to));
      from = to;
      if (found !== -1) {
        const chunk = pending.take(offset);
        offset += chunk.length;
        yield chunk;
      }
    }
  }
  if (pending.length > 0) yield pending.take(offset);
}

/** The pieces of the chunk being cut, hashed as they arrive. */
class PendingChunk {
  readonly #hasher: Blake3Hasher;
  #pieces: Uint8Array[] = [];
  length = 0;

  constructor(hasher: Blake3Hasher) {
    this.#hasher = hasher.reset();
  }

  add(piece: Uint8Array): void {
    if (piece.length === 0) return;
    this.#hasher.update(piece);
    this.#pieces.push(piece);
    this.length += piece.length;
  }

  take(offset: number): Chunk {
    const chunk = new ChunkView(offset, this.length, this.#hasher.digestHex(), this.#pieces);
    this.#pieces = [];
    this.length = 0;
    this.#hasher.reset();
    return chunk;
  }
}

class ChunkView implements Chunk {
  readonly offset: number;
  readonly length: number;
  readonly id: ChunkId;
  readonly pieces: readonly Uint8Array[];
  #bytes: Uint8Array | undefined;

  constructor(offset: number, length: number, id: ChunkId, pieces: readonly Uint8Array[]) {
    this.offset = offset;
    this.length = length;
    this.id = id;
    this.pieces = pieces;
  }

  get bytes(): Uint8Array {
    this.#bytes ??= this.pieces.length === 1 ? this.pieces[0]! : concat(this.pieces, this.length);
    return this.#bytes;
  }
}

export function concat(pieces: readonly Uint8Array[], length: number): Uint8Array {
  const out = Buffer.allocUnsafe(length);
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The buffer API: every chunk of an in-memory buffer, each a view of it. */
export async function chunkBuffer(buf: Uint8Array, options: ChunkStreamOptions): Promise<Chunk[]> {
  const out: Chunk[] = [];
  for await (const chunk of chunkStream([buf], options)) out.push(chunk);
  return out;
}
