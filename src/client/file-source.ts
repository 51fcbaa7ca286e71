import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

/**
 * A source putFile can hand buffers back to: after it is done with every byte before offset
 * `upTo` (copied or skipped), it calls `release(upTo)`, and the source may reuse the buffers
 * that held only such bytes.
 */
export interface ReleasingSource extends AsyncIterable<Uint8Array> {
  release(upTo: number): void;
}

const DEFAULT_READ_BYTES = 256 * 1024;

/**
 * A file's bytes in reads of `readBytes`, into buffers that are reused once released, so reading
 * a file of any size allocates only the few buffers the chunker holds at once (its current chunk,
 * at most the chunker's max size, plus one read) and leaves no garbage behind: with fresh
 * buffers per read (a read stream), the read a chunk ends in lived as long as that chunk's
 * upload waited, and only full collections freed it.
 *
 * One pass: iterate it once. Closes the file when the iteration ends, however it ends.
 */
export class PooledFileReads implements ReleasingSource {
  readonly #path: string;
  readonly #readBytes: number;
  readonly #idle: Uint8Array[] = [];
  /** Buffers handed out and not yet released, in file order, with the offset each ends at. */
  readonly #held: Array<{ readonly buffer: Uint8Array; readonly end: number }> = [];
  #iterated = false;

  constructor(path: string, readBytes = DEFAULT_READ_BYTES) {
    this.#path = path;
    this.#readBytes = readBytes;
  }

  release(upTo: number): void {
    while (this.#held.length > 0 && this.#held[0]!.end <= upTo) this.#idle.push(this.#held.shift()!.buffer);
  }

  /** Buffers allocated so far (held or idle): bounded by what the consumer holds, not the file size. */
  get buffers(): number {
    return this.#held.length + this.#idle.length;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    if (this.#iterated) throw new Error('PooledFileReads is a one-pass source');
    this.#iterated = true;
    const file: FileHandle = await open(this.#path, 'r');
    try {
      let offset = 0;
      for (;;) {
        // The consumer asked for more, so it is done scanning the last read; released buffers
        // (whose bytes were all copied or skipped) are free to fill again.
        const buffer = this.#idle.pop() ?? Buffer.allocUnsafeSlow(this.#readBytes);
        const { bytesRead } = await file.read(buffer, 0, this.#readBytes, offset);
        if (bytesRead === 0) {
          this.#idle.push(buffer);
          return;
        }
        offset += bytesRead;
        this.#held.push({ buffer, end: offset });
        yield buffer.subarray(0, bytesRead);
      }
    } finally {
      await file.close();
    }
  }
}
