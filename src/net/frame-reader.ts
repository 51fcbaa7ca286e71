import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface';
import { Uint8ArrayList } from 'uint8arraylist';
import { DfsError } from '../errors/index.ts';
import { errorFromAbort } from './deadline.ts';
import {
  checkMaxFrameBytes,
  DEFAULT_FRAME_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MIN_FRAME_BYTES_PER_SECOND,
  DEFAULT_READ_HIGH_WATER_BYTES,
  FRAME_HEADER_BYTES,
  MAX_STREAM_READ_BUFFER_BYTES,
  streamClosedError,
  streamPeer,
} from './frame-format.ts';
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
  /**
   * Called with the error just before the reader aborts the stream for any reason of its own
   * (oversized frame, unfinished frame timed out, receive budget exceeded), after
   * onOversizedFrame. Same use and caveat as onOversizedFrame.
   */
  readonly onAbort?: (err: DfsError) => void;
  /**
   * A partly received frame (from its first header byte) that gets no byte for this long makes
   * the reader abort the stream with ERR_TIMEOUT. Default 30 s; 0 turns the timeout off.
   */
  readonly frameIdleTimeoutMs?: number;
  /**
   * A partly received frame must keep at least this pace over every frameIdleTimeoutMs (a
   * sliding window, checked from one idle timeout after it began), or the stream is aborted
   * with ERR_TIMEOUT: a peer trickling a byte now and then is never idle, and one that sends
   * most of a frame at once and then trickles is caught an idle timeout later. Default 64 KiB/s
   * (2 MiB per 30 s); 0 turns the check off.
   */
  readonly minFrameBytesPerSecond?: number;
  /**
   * The budget the bytes of a partly received frame count against (per remote peer and in all);
   * beyond it the stream is aborted with ERR_OVERLOADED. Default: the process-wide one
   * (`processReceiveBudget`); false: none.
   */
  readonly budget?: ReceiveBudget | false;
}

export interface ReceiveBudgetLimits {
  /** Bytes the readers of one remote peer's streams may hold at once. */
  readonly perPeerBytes: number;
  /** Bytes all readers sharing the budget may hold at once. */
  readonly totalBytes: number;
}

const MiB = 1024 * 1024;

/**
 * Defaults of the process-wide receive budget. Per peer: one frame of the largest kind a peer
 * really sends (a Raft append carrying a maximal metadata command, the metadata protocol's
 * largest request) with room to spare, beside its chunk streams' 1 MiB frames in flight. In
 * all: what a process may hold in frames still arriving, whoever sends them.
 */
export const DEFAULT_RECEIVE_BUDGET: ReceiveBudgetLimits = { perPeerBytes: 48 * MiB, totalBytes: 192 * MiB };

/** Bytes held on behalf of one remote peer. */
interface PeerShare {
  bytes: number;
  holders: number;
}

export interface ReceiveBudgetStats {
  /** Growth refused because the peer was at its limit. */
  refusedPeer: number;
  /** Growth refused because the whole budget was taken. */
  refusedTotal: number;
  peakTotalBytes: number;
}

/**
 * Bytes of frames that FrameReaders have partly received (the peer still owes the rest), per
 * remote peer and in all. A reader whose unfinished frame would take its peer past
 * `perPeerBytes`, or everyone past `totalBytes`, is refused and aborts its own stream with
 * ERR_OVERLOADED: the excess falls on the stream that grows, never on frames already being
 * received. With the per-frame size limits and the unfinished-frame timeout this bounds what any
 * peer, or any number of them, can make a process hold by starting frames and not finishing
 * them. (Whole frames waiting for a slow consumer are bounded per stream by the pause.)
 */
export class ReceiveBudget {
  #limits: ReceiveBudgetLimits;
  readonly stats: ReceiveBudgetStats = { refusedPeer: 0, refusedTotal: 0, peakTotalBytes: 0 };
  readonly #peers = new Map<string, PeerShare>();
  #total = 0;

  constructor(limits: ReceiveBudgetLimits = DEFAULT_RECEIVE_BUDGET) {
    this.#limits = checkLimits(limits);
  }

  get limits(): ReceiveBudgetLimits {
    return this.#limits;
  }

  /** New limits, for growth from now on (what is held stays held). */
  setLimits(limits: ReceiveBudgetLimits): void {
    this.#limits = checkLimits(limits);
  }

  get totalBytes(): number {
    return this.#total;
  }

  peerBytes(peer: string): number {
    return this.#peers.get(peer)?.bytes ?? 0;
  }

  /**
   * Moves a holder of `peer` from `held` to `bytes`. Shrinking always succeeds; growth is
   * refused (the error returned, nothing changed) beyond either limit.
   */
  resize(peer: string, held: number, bytes: number, what: string): DfsError | undefined {
    const delta = bytes - held;
    if (delta === 0) return undefined;
    let share = this.#peers.get(peer);
    if (delta > 0) {
      const peerBytes = share?.bytes ?? 0;
      if (peerBytes + delta > this.limits.perPeerBytes) {
        this.stats.refusedPeer++;
        return new DfsError(
          'ERR_OVERLOADED',
          `${what}: peer ${peer} would have ${peerBytes + delta} bytes of frames being received here, over its ${this.limits.perPeerBytes}-byte budget`,
        );
      }
      if (this.#total + delta > this.limits.totalBytes) {
        this.stats.refusedTotal++;
        return new DfsError('ERR_OVERLOADED', `${what}: ${this.#total} bytes of frames from all peers are being received here, the most this process takes (${this.limits.totalBytes}); retry later`);
      }
    }
    if (!share) {
      share = { bytes: 0, holders: 0 };
      this.#peers.set(peer, share);
    }
    if (held === 0) share.holders++;
    if (bytes === 0) share.holders--;
    share.bytes += delta;
    this.#total += delta;
    if (share.holders === 0) this.#peers.delete(peer);
    if (this.#total > this.stats.peakTotalBytes) this.stats.peakTotalBytes = this.#total;
    return undefined;
  }
}

function checkLimits(limits: ReceiveBudgetLimits): ReceiveBudgetLimits {
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || (value as number) <= 0) throw new DfsError('ERR_INVALID_ARGUMENT', `receive budget ${name} must be a positive integer, got ${value}`);
  }
  return { perPeerBytes: limits.perPeerBytes, totalBytes: limits.totalBytes };
}

/** The budget every FrameReader of this process counts against unless told otherwise. */
export const processReceiveBudget = new ReceiveBudget();

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
 * - a partly received frame must keep coming: no byte for `frameIdleTimeoutMs` (30 s), or
 *   under `minFrameBytesPerSecond` over the last 30 s, aborts the stream with ERR_TIMEOUT;
 * - the bytes of a partly received frame count against a receive budget per remote peer and per
 *   process (`ReceiveBudget`); growth beyond it aborts the growing stream with ERR_OVERLOADED;
 * - what one stream buffers is at most one frame (header included) or `highWaterBytes`, plus
 *   one delivery from the stream (at most MAX_STREAM_READ_BUFFER_BYTES, what a paused stream
 *   holds); beyond that (a stream that ignored a pause) the reader aborts with ERR_PROTOCOL;
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
  readonly #onAbort: ((err: DfsError) => void) | undefined;
  readonly #idleTimeoutMs: number;
  readonly #minBytesPerSecond: number;
  readonly #budget: ReceiveBudget | undefined;
  readonly #peer: string;
  readonly #maxBufferedBytes: number;
  /** Bytes counted against the budget (the unfinished head frame's, when last accounted). */
  #held = 0;
  readonly #buffer = new Uint8ArrayList();
  /** When the unfinished frame at the head of #buffer started (performance.now()), if any. */
  #partialSince: number | undefined;
  /** Bytes received since #partialSince. */
  #partialBytes = 0;
  /** [time, #partialBytes] at the timer's ticks: the pace over the last idle timeout. */
  #samples: Array<readonly [number, number]> = [];
  #lastByteAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerDueAt = 0;
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
    this.#onAbort = options.onAbort;
    this.#idleTimeoutMs = nonNegative('frameIdleTimeoutMs', options.frameIdleTimeoutMs ?? DEFAULT_FRAME_IDLE_TIMEOUT_MS);
    this.#minBytesPerSecond = nonNegative('minFrameBytesPerSecond', options.minFrameBytesPerSecond ?? DEFAULT_MIN_FRAME_BYTES_PER_SECOND);
    this.#budget = options.budget === false ? undefined : (options.budget ?? processReceiveBudget);
    this.#peer = streamPeer(stream) ?? 'unknown';
    this.#maxBufferedBytes = Math.max(FRAME_HEADER_BYTES + this.#maxFrameBytes, this.#highWaterBytes) + MAX_STREAM_READ_BUFFER_BYTES;
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
    this.#stopTimer();
    // What is still buffered is left to be collected; it no longer counts against the budget.
    this.#account(0);
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
    if (!this.#failure && this.#accountUnfinished()) {
      // The next frame's clock starts now: while the taken one waited, the stream may have been
      // paused by us, which is no fault of the peer's.
      this.#partialSince = undefined;
      this.#trackPartial(0);
    }
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

  /**
   * Aborts the stream with `err` (a protocol violation by the peer, or a bound it ran into),
   * after telling onAbort; reads then fail with `err`.
   */
  #fail(err: DfsError): void {
    if (this.#failure) return;
    this.#failure = err;
    // Nothing more from this stream is wanted; dropping the partial frame frees its memory.
    this.#headLength = undefined;
    this.#buffer.consume(this.#buffer.byteLength);
    this.#stopTimer();
    this.#account(0);
    try {
      this.#onAbort?.(err);
    } catch {
      // the hook is best effort; the abort below tells the peer anyway
    } finally {
      this.#stream.abort(err);
    }
  }

  /**
   * Counts the unfinished frame at the head of the buffer, if any, against the budget; growth
   * beyond it fails the stream. Whole frames waiting for our consumer are not counted: they are
   * bounded by the pause (highWaterBytes), and are no doing of the peer's. Nor is the start of a
   * frame stuck behind them while we pause: it counts once it is at the head.
   */
  #accountUnfinished(): boolean {
    return this.#account(this.#headIncomplete() ? this.#buffer.byteLength : 0);
  }

  #account(bytes: number): boolean {
    if (bytes === this.#held) return true;
    if (this.#budget) {
      const refused = this.#budget.resize(this.#peer, this.#held, bytes, `stream ${this.#stream.protocol}`);
      if (refused) {
        this.#fail(refused);
        return false;
      }
    }
    this.#held = bytes;
    return true;
  }

  /** Whether the frame at the head of the buffer has begun but not fully arrived. */
  #headIncomplete(): boolean {
    const buffered = this.#buffer.byteLength;
    if (buffered === 0) return false;
    const length = this.#headLength;
    return length === undefined || buffered < FRAME_HEADER_BYTES + length;
  }

  /** Starts or continues timing the unfinished head frame; `received` bytes just came. */
  #trackPartial(received: number): void {
    if (!this.#headIncomplete()) {
      this.#partialSince = undefined;
      return;
    }
    if (this.#idleTimeoutMs === 0) return;
    const now = performance.now();
    this.#lastByteAt = now;
    if (this.#partialSince === undefined) {
      this.#partialSince = now;
      this.#partialBytes = received === 0 ? 0 : this.#buffer.byteLength;
      this.#samples = [[now, 0]];
    } else {
      this.#partialBytes += received;
    }
    // One timer per reader, re-armed from its own callback: frames that complete quickly cost
    // no timer calls at all.
    if (!this.#timer) this.#armTimer(now);
  }

  #armTimer(now: number): void {
    // A tenth of the timeout (at most 3 s): a stalled frame is reset within 110% of it.
    const delay = Math.max(10, Math.min(3_000, Math.ceil(this.#idleTimeoutMs / 10)));
    this.#timerDueAt = now + delay;
    this.#timer = setTimeout(this.#onTimer, delay);
    this.#timer.unref?.();
  }

  #stopTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    if (this.#failure || this.#released || this.#ended) return;
    if (!this.#headIncomplete() || this.#partialSince === undefined) {
      this.#partialSince = undefined;
      return;
    }
    const now = performance.now();
    const lateBy = now - this.#timerDueAt;
    if (lateBy > 1_000) {
      // This process stood still (a long synchronous task, a stopped process): bytes may be
      // waiting in the socket, unseen. Not the peer's fault; its clock restarts.
      this.#lastByteAt = now;
      this.#partialSince += lateBy;
      this.#samples = [[now, this.#partialBytes]];
      this.#armTimer(now);
      return;
    }
    const idleFor = now - this.#lastByteAt;
    const frame = this.#headLength === undefined ? 'a frame header' : `a ${this.#headLength}-byte frame`;
    const got = `${Math.max(0, this.#buffer.byteLength - FRAME_HEADER_BYTES)} bytes of ${frame}`;
    if (idleFor >= this.#idleTimeoutMs) {
      this.#failTimedOut(`stream ${this.#stream.protocol}: ${got} arrived, then nothing for ${Math.round(idleFor)} ms`);
      return;
    }
    // The pace over the last idle timeout (a sliding window from the ticks' samples): a burst
    // followed by a trickle is caught one idle timeout after the burst, not averaged away.
    const samples = this.#samples;
    samples.push([now, this.#partialBytes]);
    while (samples.length > 1 && samples[1]![0] <= now - this.#idleTimeoutMs) samples.shift();
    const [since, bytesThen] = samples[0]!;
    const window = now - since;
    if (this.#minBytesPerSecond > 0 && window >= this.#idleTimeoutMs) {
      const bytes = this.#partialBytes - bytesThen;
      if (bytes < (this.#minBytesPerSecond * window) / 1000) {
        const pace = Math.round((bytes * 1000) / window);
        this.#failTimedOut(`stream ${this.#stream.protocol}: ${got} arrived, the last ${bytes} at ${pace} bytes/s over ${Math.round(window)} ms, under the ${this.#minBytesPerSecond} bytes/s a frame must keep up`);
        return;
      }
    }
    this.#armTimer(now);
  };

  #failTimedOut(message: string): void {
    this.#fail(new DfsError('ERR_TIMEOUT', message));
    this.#wake();
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
    const buffered = this.#buffer.byteLength;
    if (buffered > this.stats.peakBufferedBytes) this.stats.peakBufferedBytes = buffered;
    if (buffered > this.#maxBufferedBytes) {
      this.#fail(new DfsError('ERR_PROTOCOL', `stream ${this.#stream.protocol}: ${buffered} bytes buffered, over the ${this.#maxBufferedBytes} one stream may hold (it ignored a pause)`));
    } else {
      this.#parseHeader();
      if (!this.#failure && this.#accountUnfinished()) this.#trackPartial(evt.data.byteLength);
    }
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
    this.#stopTimer();
    if (evt.error !== undefined && !this.#failure) this.#failure = streamClosedError(this.#stream, evt.error);
    else if (evt.error === undefined && this.#stream.readableEnded) this.#ended = true;
    this.#wake();
  };
}

function nonNegative(name: string, value: number): number {
  if (!(value >= 0) || !Number.isFinite(value)) throw new DfsError('ERR_INVALID_ARGUMENT', `${name} must be a non-negative number, got ${value}`);
  return value;
}
