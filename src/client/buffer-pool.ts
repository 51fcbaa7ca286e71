import { DfsError } from '../errors/index.ts';

/** Buffers are allocated in multiples of this, so chunks of nearby sizes share them. */
const GRAIN_BYTES = 256 * 1024;

/**
 * Reusable buffers for chunks in flight. A transfer copies each chunk's bytes into a buffer taken
 * here as they arrive, and gives it back once the chunk is written out, so the transport's own
 * buffers die as soon as they are copied (young, in a cheap minor GC) and the long-lived bytes sit
 * in a few buffers that are never garbage. Without it, every received buffer that lived as long
 * as its chunk was promoted to V8's old generation, and only full collections (measured: about
 * 15 a second during a get) freed them.
 *
 * Keeps at most `maxIdleBytes` of idle buffers; a buffer given back beyond that is dropped.
 */
export class BufferPool {
  readonly #idle: Uint8Array[] = [];
  readonly #maxIdleBytes: number;
  #idleBytes = 0;

  constructor(maxIdleBytes: number) {
    if (!(Number.isSafeInteger(maxIdleBytes) && maxIdleBytes >= 0)) {
      throw new DfsError('ERR_INVALID_ARGUMENT', `maxIdleBytes must be a non-negative integer, got ${maxIdleBytes}`);
    }
    this.#maxIdleBytes = maxIdleBytes;
  }

  /** A buffer of at least `size` bytes: the smallest idle one that fits, else a new one. */
  take(size: number): Uint8Array {
    let best = -1;
    for (let i = 0; i < this.#idle.length; i++) {
      const length = this.#idle[i]!.byteLength;
      if (length >= size && (best < 0 || length < this.#idle[best]!.byteLength)) best = i;
    }
    if (best < 0) return Buffer.allocUnsafeSlow(Math.ceil(size / GRAIN_BYTES) * GRAIN_BYTES);
    const [buffer] = this.#idle.splice(best, 1) as [Uint8Array];
    this.#idleBytes -= buffer.byteLength;
    return buffer;
  }

  /** Gives `buffer` back; the caller must not touch it afterwards. */
  give(buffer: Uint8Array): void {
    if (buffer.byteLength === 0 || this.#idleBytes + buffer.byteLength > this.#maxIdleBytes) return;
    this.#idle.push(buffer);
    this.#idleBytes += buffer.byteLength;
  }

  /** Bytes held by idle buffers. */
  get idleBytes(): number {
    return this.#idleBytes;
  }
}
