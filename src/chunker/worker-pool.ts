/**
 * PROTOTYPE (issue 16, not wired in): FastCDC cut search and BLAKE3 off the main thread, on a
 * pool of worker threads, with output identical to `chunkStream` (same cuts, same ids).
 *
 * FastCDC is sequential (a cut depends on where the chunk began), so the input is split into
 * segments (default 8 MiB, copied once into buffers of their own) and each worker chunks its
 * segment speculatively, as if a chunk began at the segment's first byte, and hashes every
 * chunk it finds. The main thread then stitches: it carries on the true chain of cuts from the
 * previous segment (CutScanner, resumable) into the new one until the true chain lands on a cut
 * the worker found; from that cut on the two chains are the same (a cut depends only on the
 * chunk's start and its bytes), so the worker's cuts and hashes are taken as they are. Only the
 * chunks before that meeting point are hashed on the main thread (typically one per segment:
 * the gear hash only sees the last 32 bytes, and a cut under the stricter mask is also one under
 * the looser, so the chains meet at the first strict cut past the minimum size).
 *
 * Buffers move, never copied back: a segment's ArrayBuffer is transferred to its worker and
 * back, and the chunks are views of it (a chunk spanning two segments has a piece in each).
 * Memory: at most `inflight` segments being worked on plus the ones chunks still point into.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { DfsError } from '../errors/index.ts';
import { type Blake3, type Blake3Preference, loadBlake3 } from './blake3.ts';
import { CutScanner } from './cut.ts';
import { type ChunkerParams, DEFAULT_CHUNKER_PARAMS } from './params.ts';
import type { Chunk } from './stream.ts';

const ROLE = 'dfs-chunk-worker';

export interface ChunkWorkerPoolOptions {
  /** Worker threads. Default 2. */
  readonly threads?: number;
  readonly params?: ChunkerParams;
  /** Bytes per segment handed to a worker. Default 8 MiB (at least 2 x maxSize, so a segment holds whole chunks). */
  readonly segmentBytes?: number;
  /** Segments at the workers at once. Default 2 per thread. */
  readonly inflight?: number;
  readonly blake3?: Blake3Preference;
}

/** What a worker sends back for one segment: its buffer, and the speculative chain. */
interface SegmentAnswer {
  readonly seq: number;
  readonly buffer: ArrayBuffer;
  readonly length: number;
  /** Ends (exclusive, in the segment) of the chunks found from byte 0: the last chunk, cut by the segment's end, is not in it. */
  readonly cuts: number[];
  /** ids[k]: BLAKE3 of segment[cuts[k-1] ?? 0, cuts[k]). */
  readonly ids: string[];
}

interface SegmentJob {
  readonly seq: number;
  readonly buffer: ArrayBuffer;
  readonly length: number;
}

/** A pool of chunking workers; `chunk` may be called for one stream at a time. Call `close`. */
export class ChunkWorkerPool {
  readonly params: ChunkerParams;
  readonly #workers: Worker[];
  readonly #blake3: Blake3;
  readonly #segmentBytes: number;
  readonly #inflight: number;
  readonly #waiting = new Map<number, { resolve: (a: SegmentAnswer) => void; reject: (e: unknown) => void }>();
  #seq = 0;

  private constructor(workers: Worker[], blake3: Blake3, params: ChunkerParams, segmentBytes: number, inflight: number) {
    this.#workers = workers;
    this.#blake3 = blake3;
    this.params = params;
    this.#segmentBytes = segmentBytes;
    this.#inflight = inflight;
    for (const w of workers) {
      w.on('message', (a: SegmentAnswer) => {
        const waiter = this.#waiting.get(a.seq);
        this.#waiting.delete(a.seq);
        waiter?.resolve(a);
      });
      w.on('error', (err) => {
        for (const waiter of this.#waiting.values()) waiter.reject(err);
        this.#waiting.clear();
      });
    }
  }

  static async create(options: ChunkWorkerPoolOptions = {}): Promise<ChunkWorkerPool> {
    const params = options.params ?? DEFAULT_CHUNKER_PARAMS;
    const threads = options.threads ?? 2;
    const segmentBytes = options.segmentBytes ?? 8 * 1024 * 1024;
    if (!(Number.isSafeInteger(threads) && threads >= 1)) throw new DfsError('ERR_INVALID_ARGUMENT', `threads must be a positive integer, got ${threads}`);
    if (segmentBytes < 2 * params.maxSize) throw new DfsError('ERR_INVALID_ARGUMENT', `segmentBytes must be at least 2 x maxSize (${2 * params.maxSize}), got ${segmentBytes}`);
    const blake3 = await loadBlake3(options.blake3);
    const workers = Array.from(
      { length: threads },
      () => new Worker(new URL(import.meta.url), { workerData: { role: ROLE, params, blake3: blake3.backend } }),
    );
    await Promise.all(workers.map((w) => new Promise<void>((ok, fail) => w.once('online', ok).once('error', fail))));
    return new ChunkWorkerPool(workers, blake3, params, segmentBytes, options.inflight ?? 2 * threads);
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }

  #submit(job: SegmentJob): Promise<SegmentAnswer> {
    const worker = this.#workers[job.seq % this.#workers.length]!;
    return new Promise<SegmentAnswer>((resolve, reject) => {
      this.#waiting.set(job.seq, { resolve, reject });
      worker.postMessage(job, [job.buffer]);
    });
  }

  /** The chunks of `source`, exactly as `chunkStream(source, { params })` cuts and names them. */
  async *chunk(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Chunk> {
    const pending: Array<Promise<SegmentAnswer>> = [];
    const stitcher = new Stitcher(this.params, this.#blake3);
    let segment = new Uint8Array(new ArrayBuffer(this.#segmentBytes));
    let filled = 0;
    const send = (): void => {
      pending.push(this.#submit({ seq: this.#seq++, buffer: segment.buffer as ArrayBuffer, length: filled }));
      segment = new Uint8Array(new ArrayBuffer(this.#segmentBytes));
      filled = 0;
    };
    for await (const read of source) {
      let at = 0;
      while (at < read.length) {
        const n = Math.min(read.length - at, segment.length - filled);
        segment.set(read.subarray(at, at + n), filled);
        filled += n;
        at += n;
        if (filled === segment.length) send();
      }
      while (pending.length >= this.#inflight) yield* stitcher.take(await pending.shift()!);
    }
    if (filled > 0) send();
    while (pending.length > 0) yield* stitcher.take(await pending.shift()!);
    yield* stitcher.end();
  }
}

/** A chunk: offset, length, id and its pieces (views of segment buffers). */
function makeChunk(offset: number, id: string, pieces: Uint8Array[]): Chunk {
  const length = pieces.reduce((n, p) => n + p.length, 0);
  let bytes: Uint8Array | undefined;
  return {
    offset,
    length,
    id,
    pieces,
    get bytes() {
      bytes ??= pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
      return bytes;
    },
  };
}

/** Joins the workers' speculative chains into the true one, segment by segment, in order. */
class Stitcher {
  readonly #scanner: CutScanner;
  readonly #blake3: Blake3;
  /** Pieces of the true chain's current chunk, not yet ended. */
  #carry: Uint8Array[] = [];
  #offset = 0;

  constructor(params: ChunkerParams, blake3: Blake3) {
    this.#scanner = new CutScanner(params);
    this.#blake3 = blake3;
  }

  *take(a: SegmentAnswer): Generator<Chunk> {
    const seg = new Uint8Array(a.buffer, 0, a.length);
    let at = 0;
    // Carry the true chain on until it meets a cut of the worker's (or the segment ends).
    let k = -1; // index into a.cuts of the chunk the worker chain has ended at `at`, -1: at 0
    if (this.#carry.length > 0) {
      const cutSet = new Set(a.cuts);
      for (;;) {
        const found = this.#scanner.scan(seg, at, seg.length);
        if (found === -1) {
          if (at < seg.length) this.#carry.push(seg.subarray(at));
          return;
        }
        this.#carry.push(seg.subarray(at, found));
        yield this.#emit(this.#blake3.hashHex(this.#carry), this.#carry);
        this.#carry = [];
        at = found;
        if (cutSet.has(found)) {
          k = a.cuts.indexOf(found);
          break;
        }
      }
    }
    // From `at` (0, or a cut both chains share) the worker's chain is the true one.
    for (let j = k + 1; j < a.cuts.length; j++) {
      const end = a.cuts[j]!;
      yield this.#emit(a.ids[j]!, [seg.subarray(at, end)]);
      at = end;
    }
    // The rest begins a chunk that the next segment ends: the scanner consumes it as the true chain.
    this.#scanner.reset();
    if (at < seg.length) {
      const found = this.#scanner.scan(seg, at, seg.length);
      if (found !== -1) throw new DfsError('ERR_INTERNAL', `chunk worker missed a cut at ${found}`);
      this.#carry.push(seg.subarray(at));
    }
  }

  *end(): Generator<Chunk> {
    if (this.#carry.length > 0) yield this.#emit(this.#blake3.hashHex(this.#carry), this.#carry);
    this.#carry = [];
  }

  #emit(id: string, pieces: Uint8Array[]): Chunk {
    const chunk = makeChunk(this.#offset, id, pieces);
    this.#offset += chunk.length;
    return chunk;
  }
}

/** Worker side: chunk each segment from its byte 0 and hash every whole chunk found. */
async function serveSegments(): Promise<void> {
  const { params, blake3: backend } = workerData as { params: ChunkerParams; blake3: Blake3Preference };
  const blake3 = await loadBlake3(backend);
  const scanner = new CutScanner(params);
  parentPort!.on('message', (job: SegmentJob) => {
    const seg = new Uint8Array(job.buffer, 0, job.length);
    const cuts: number[] = [];
    const ids: string[] = [];
    scanner.reset();
    let start = 0;
    for (;;) {
      const found = scanner.scan(seg, start, seg.length);
      if (found === -1) break;
      cuts.push(found);
      ids.push(blake3.hashHex(seg.subarray(start, found)));
      start = found;
    }
    const answer: SegmentAnswer = { seq: job.seq, buffer: job.buffer, length: job.length, cuts, ids };
    parentPort!.postMessage(answer, [job.buffer]);
  });
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === ROLE) await serveSegments();
