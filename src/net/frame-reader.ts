import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface';
import { Uint8ArrayList } from 'uint8arraylist';
import { DfsError } from '../errors/index.ts';
import { errorFromAbort } from './deadline.ts';
import { checkMaxFrameBytes, DEFAULT_MAX_FRAME_BYTES, DEFAULT_READ_HIGH_WATER_BYTES, FRAME_HEADER_BYTES, streamClosedError } from './frame-format.ts';
import type { FrameOptions, SignalOptions } from './frame-format.ts';

export interface FrameReaderOptions extends FrameOptions {
  /** Pause the stream while this many bytes (including one whole frame) wait unread. */
  readonly highWaterBytes?: number;
  /**
   * Called with the ERR_PROTOCOL error just before an oversized frame makes the reader abort
   * the stream, e.g. to stream.send() the peer an error message (best effort: the abort drops
   * whatever the stream could not hand to the muxer at once).
   */
  readonly onOversizedFrame?: (err: DfsError) => void;
}

export interface FrameReaderStats {
  framesRead: number;
  /** The most bytes this reader ever held (whole and partial frames). */
  peakBufferedBytes: number;
  /** How many times the reader paused the stream because the consumer fell behind. */
  pauses: number;
}

interface Waiter {
  resolve(frame: Uint8ArrayList | undefined): void;
  reject(err: DfsError): void;
}

/**
 * Reads whole frames from a stream, reassembled from the chunks the muxer delivers. Frames come
 * back as Uint8ArrayLists that share memory with the received chunks (no copy); call
 * `.subarray()` for one contiguous Uint8Array (copies only if the frame spans chunks).
 *
 * Memory stays bounded whatever the peer does:
 * - a frame header announcing more than `maxFrameBytes` aborts the stream with ERR_PROTOCOL
 *   before any of its payload is buffered;
 * - when a whole frame waits unread and `highWaterBytes` are buffered, the stream is paused.
 *   With yamux, a paused stream stops granting send window, so the sender's send() returns false
 *   and it waits for 'drain'. (The stream's own async iterator never pauses: it would buffer
 *   without limit behind a slow consumer.) The reader never pauses without a whole frame
 *   buffered, so a frame larger than `highWaterBytes` still completes and nothing deadlocks.
 *
 * End of stream: read() resolves undefined when the remote closed its write side after a whole
 * frame, and throws ERR_PROTOCOL if it closed mid-frame (truncated), ERR_STREAM_CLOSED if the
 * stream was reset or aborted. Frames that arrived whole before an error are still returned.
 */
export class FrameReader implements AsyncIterable<Uint8ArrayList> {
  readonly stats: FrameReaderStats = { framesRead: 0, peakBufferedBytes: 0, pauses: 0 };
  readonly #stream: Stream;
  readonly #maxFrameBytes: number;
  readonly #highWaterBytes: number;
  readonly #onOversizedFrame: ((err: DfsError) => void) | undefined;
  readonly #buffer = new Uint8ArrayList();
  /** Payload length of the frame at the head of #buffer, once its header has arrived. */
  #headLength: number | undefined;
  #ended = false;
  #failure: DfsError | undefined;
  #waiter: Waiter | undefined;
  #paused = false;
  #released = false;
  #waking = false;

  constructor(stream: Stream, options: FrameReaderOptions = {}) {
    this.#stream = stream;
    this.#maxFrameBytes = checkMaxFrameBytes(options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
    this.#highWaterBytes = options.highWaterBytes ?? DEFAULT_READ_HIGH_WATER_BYTES;
    this.#onOversizedFrame = options.onOversizedFrame;
    if (stream.status === 'aborted' || stream.status === 'reset') {
      this.#failure = streamClosedError(stream, undefined);
    } else if (stream.readableEnded) {
      this.#ended = true;
    }
    stream.addEventListener('message', this.#onMessage);
    stream.addEventListener('end', this.#onEnd);
    stream.addEventListener('close', this.#onClose);
  }

  get bufferedBytes(): number {
    return this.#buffer.byteLength;
  }

  /** The next whole frame, or undefined at a clean end of stream. One read at a time. */
  read(options: SignalOptions = {}): Promise<Uint8ArrayList | undefined> {
    if (this.#waiter) return Promise.reject(new DfsError('ERR_INVALID_ARGUMENT', 'FrameReader.read called while another read is pending'));
    try {
      const settled = this.#settle();
      if (settled !== 'wait') return Promise.resolve(settled);
    } catch (err) {
      return Promise.reject(err);
    }
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(errorFromAbort(signal, `reading from ${this.#stream.protocol}`));
    return new Promise<Uint8ArrayList | undefined>((resolve, reject) => {
      const onAbort = (): void => {
        this.#waiter = undefined;
        reject(errorFromAbort(signal as AbortSignal, `reading from ${this.#stream.protocol}`));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiter = {
        resolve: (frame) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(frame);
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8ArrayList> {
    try {
      for (let frame = await this.read(); frame !== undefined; frame = await this.read()) yield frame;
    } finally {
      this.release();
    }
  }

  /** Stops listening to the stream; data that arrives later is left to the stream. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#stream.removeEventListener('message', this.#onMessage);
    this.#stream.removeEventListener('end', this.#onEnd);
    this.#stream.removeEventListener('close', this.#onClose);
    this.#resumeIfPaused();
    this.#waiter?.reject(new DfsError('ERR_STREAM_CLOSED', `reader of ${this.#stream.protocol} released`));
    this.#waiter = undefined;
  }

  /** A whole frame, undefined for a clean end, 'wait' for more data; throws on failure. */
  #settle(): Uint8ArrayList | undefined | 'wait' {
    const frame = this.#takeFrame();
    if (frame) return frame;
    if (this.#failure) throw this.#failure;
    if (this.#ended) {
      if (this.#buffer.byteLength === 0) return undefined;
      throw new DfsError(
        'ERR_PROTOCOL',
        `stream ${this.#stream.protocol} ended inside a frame (${this.#buffer.byteLength} bytes of an unfinished frame)`,
      );
    }
    if (this.#released) throw new DfsError('ERR_STREAM_CLOSED', `reader of ${this.#stream.protocol} released`);
    return 'wait';
  }

  #takeFrame(): Uint8ArrayList | undefined {
    const length = this.#headLength;
    if (length === undefined || this.#buffer.byteLength < FRAME_HEADER_BYTES + length) return undefined;
    const frame = this.#buffer.sublist(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length);
    this.#buffer.consume(FRAME_HEADER_BYTES + length);
    this.#headLength = undefined;
    this.#parseHeader();
    this.stats.framesRead++;
    if (this.#paused && !this.#shouldPause()) this.#resumeIfPaused();
    return frame;
  }

  #parseHeader(): void {
    if (this.#headLength !== undefined || this.#buffer.byteLength < FRAME_HEADER_BYTES) return;
    const length = this.#buffer.getUint32(0, false);
    if (length > this.#maxFrameBytes) {
      const err = new DfsError('ERR_PROTOCOL', `frame of ${length} bytes exceeds the ${this.#maxFrameBytes}-byte limit of ${this.#stream.protocol}`);
      try {
        this.#onOversizedFrame?.(err);
      } finally {
        this.#fail(err);
      }
      return;
    }
    this.#headLength = length;
  }

  #shouldPause(): boolean {
    const length = this.#headLength;
    const wholeFrameBuffered = length !== undefined && this.#buffer.byteLength >= FRAME_HEADER_BYTES + length;
    return wholeFrameBuffered && this.#buffer.byteLength >= this.#highWaterBytes;
  }

  /**
   * @libp2p/utils 7.4's resume() hands the bytes buffered while paused to our 'message' listener
   * before it resumes the muxer, so a pause asked for from inside that hand-off would be undone
   * by the muxer's resume, and yamux would keep granting window to a stream that buffers
   * without limit. Such a pause is deferred and applied once resume() has returned.
   */
  #resuming = false;

  #resumeIfPaused(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (this.#stream.readStatus !== 'paused') return;
    this.#resuming = true;
    try {
      this.#stream.resume();
    } finally {
      this.#resuming = false;
    }
    this.#pauseIfBehind();
  }

  #pauseIfBehind(): void {
    if (!this.#paused && !this.#failure && this.#shouldPause() && this.#stream.readStatus === 'readable') {
      this.#paused = true;
      this.stats.pauses++;
      this.#stream.pause();
    }
  }

  /** Aborts the stream with `err` (a protocol violation by the peer); whole frames stay readable. */
  #fail(err: DfsError): void {
    if (this.#failure) return;
    this.#failure = err;
    // Nothing more from this stream is wanted; dropping the partial frame frees its memory.
    this.#headLength = undefined;
    this.#buffer.consume(this.#buffer.byteLength);
    this.#stream.abort(err);
  }

  #wake(): void {
    const waiter = this.#waiter;
    // Taking a frame can abort the stream (next header oversized), whose 'close' event calls
    // back here; the outer call then delivers the frame it took, so the inner one stands down.
    if (!waiter || this.#waking) return;
    this.#waking = true;
    let settled: Uint8ArrayList | undefined | 'wait';
    try {
      settled = this.#settle();
    } catch (err) {
      this.#waiter = undefined;
      waiter.reject(err as DfsError);
      return;
    } finally {
      this.#waking = false;
    }
    if (settled === 'wait') return;
    this.#waiter = undefined;
    waiter.resolve(settled);
  }

  readonly #onMessage = (evt: StreamMessageEvent): void => {
    if (this.#failure) return;
    this.#buffer.append(evt.data);
    if (this.#buffer.byteLength > this.stats.peakBufferedBytes) this.stats.peakBufferedBytes = this.#buffer.byteLength;
    this.#parseHeader();
    this.#wake();
    if (!this.#resuming) this.#pauseIfBehind(); // during resume(): applied when it returns
  };

  readonly #onEnd = (): void => {
    // 'end' also fires just before an abort's or reset's 'close'; that one carries the error.
    if (this.#stream.status === 'aborted' || this.#stream.status === 'reset') return;
    this.#ended = true;
    this.#wake();
  };

  readonly #onClose = (evt: StreamCloseEvent): void => {
    if (evt.error !== undefined && !this.#failure) this.#failure = streamClosedError(this.#stream, evt.error);
    else if (evt.error === undefined && this.#stream.readableEnded) this.#ended = true;
    this.#wake();
  };
}
