import type { Stream, StreamCloseEvent } from '@libp2p/interface';
import { Uint8ArrayList } from 'uint8arraylist';
import { DfsError } from '../errors/index.ts';
import { errorFromAbort } from './deadline.ts';
import { checkMaxFrameBytes, DEFAULT_MAX_FRAME_BYTES, encodeFrame, streamClosedError } from './frame-format.ts';
import type { FrameOptions, SignalOptions } from './frame-format.ts';

/**
 * Waits until `stream` can take more data. v3 streams signal this with a 'drain' event after
 * send() returned false. We listen for the event rather than call stream.onDrain(): in
 * @libp2p/utils 7.4 onDrain() caches its first promise, so later calls resolve at once even
 * while the stream still needs draining, which would defeat backpressure.
 */
export function waitForDrain(stream: Stream, { signal }: SignalOptions = {}): Promise<void> {
  if (!stream.writableNeedsDrain) return Promise.resolve();
  if (stream.status !== 'open') return Promise.reject(streamClosedError(stream, undefined));
  if (signal?.aborted) return Promise.reject(errorFromAbort(signal, `writing to ${stream.protocol}`));
  return new Promise<void>((resolve, reject) => {
    const cleanup = (): void => {
      stream.removeEventListener('drain', onDrain);
      stream.removeEventListener('close', onClose);
      signal?.removeEventListener('abort', onAbort);
    };
    const onDrain = (): void => {
      cleanup();
      resolve();
    };
    const onClose = (evt: StreamCloseEvent): void => {
      cleanup();
      reject(streamClosedError(stream, evt.error));
    };
    const onAbort = (): void => {
      cleanup();
      reject(errorFromAbort(signal as AbortSignal, `writing to ${stream.protocol}`));
    };
    stream.addEventListener('drain', onDrain);
    stream.addEventListener('close', onClose);
    signal?.addEventListener('abort', onAbort);
  });
}

/** Frames written in one tick are sent together up to this many payload bytes. */
const MAX_COALESCED_BYTES = 1024 * 1024;

interface PendingFrame {
  readonly frame: Uint8ArrayList;
  readonly length: number;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
  readonly signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

export interface FrameWriterStats {
  framesWritten: number;
  payloadBytesWritten: number;
  /** How many times a write waited for the stream to drain (backpressure engaged). */
  drainWaits: number;
}

/**
 * Writes frames to a stream, honouring backpressure: when stream.send() returns false the next
 * write first waits for 'drain', so at most one frame waits in the stream's write buffer.
 * Payloads are not copied (the header and payload go to the stream as one Uint8ArrayList).
 * One writer per stream. Overlapping writes are queued: frames go out whole, in call order, and
 * each waits for the one before it (so for its drain too); close() waits for queued writes.
 */
export class FrameWriter {
  readonly stats: FrameWriterStats = { framesWritten: 0, payloadBytesWritten: 0, drainWaits: 0 };
  readonly #stream: Stream;
  readonly #maxFrameBytes: number;
  readonly #pending: PendingFrame[] = [];
  #flushing: Promise<void> | undefined;

  constructor(stream: Stream, { maxFrameBytes = DEFAULT_MAX_FRAME_BYTES }: FrameOptions = {}) {
    this.#stream = stream;
    this.#maxFrameBytes = checkMaxFrameBytes(maxFrameBytes);
  }

  /**
   * Queues a frame; resolves once it is handed to the stream. Frames written in the same tick
   * leave in one stream.send(): one muxer frame and one Noise message for many small frames
   * (an RPC server answering a batch of calls), instead of one each. Nothing more is sent while
   * the stream needs draining, so a writer that awaits each write is held back (backpressure).
   */
  write(payload: Uint8Array | Uint8ArrayList, options: SignalOptions = {}): Promise<void> {
    const length = payload.byteLength;
    if (length > this.#maxFrameBytes) {
      return Promise.reject(
        new DfsError('ERR_PROTOCOL', `frame of ${length} bytes exceeds the ${this.#maxFrameBytes}-byte limit of ${this.#stream.protocol}`),
      );
    }
    if (options.signal?.aborted) return Promise.reject(errorFromAbort(options.signal, `writing to ${this.#stream.protocol}`));
    return new Promise<void>((resolve, reject) => {
      const entry: PendingFrame = { frame: encodeFrame(payload), length, resolve, reject, signal: options.signal, onAbort: undefined };
      if (options.signal) {
        entry.onAbort = () => {
          const at = this.#pending.indexOf(entry);
          if (at >= 0) this.#pending.splice(at, 1);
          reject(errorFromAbort(options.signal as AbortSignal, `writing to ${this.#stream.protocol}`));
        };
        options.signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.#pending.push(entry);
      this.#startFlush();
    });
  }

  #startFlush(): void {
    if (this.#flushing) return;
    // Started in a microtask, so every write of this tick joins the first send.
    this.#flushing = Promise.resolve()
      .then(() => this.#flush())
      .finally(() => {
        this.#flushing = undefined;
        // A write that came after the loop's last look but before this point still needs sending.
        if (this.#pending.length > 0) this.#startFlush();
      });
  }

  async #flush(): Promise<void> {
    while (this.#pending.length > 0) {
      if (this.#stream.writableNeedsDrain) {
        this.stats.drainWaits++;
        try {
          await waitForDrain(this.#stream);
        } catch (err) {
          this.#failAll(err);
          return;
        }
        continue; // waiting may have dropped aborted entries
      }
      // One send of at most ~1 MiB of frames (always at least one).
      const batch: PendingFrame[] = [];
      const list = new Uint8ArrayList();
      let bytes = 0;
      while (this.#pending.length > 0 && (batch.length === 0 || bytes + this.#pending[0]!.length <= MAX_COALESCED_BYTES)) {
        const entry = this.#pending.shift()!;
        batch.push(entry);
        list.append(entry.frame);
        bytes += entry.length;
      }
      let accepted: boolean;
      try {
        accepted = this.#stream.send(list);
      } catch (err) {
        this.#settle(batch, streamClosedError(this.#stream, err));
        this.#failAll(err);
        return;
      }
      this.stats.framesWritten += batch.length;
      this.stats.payloadBytesWritten += bytes;
      if (!accepted) {
        // As before coalescing: a write resolves once the stream can take more.
        this.stats.drainWaits++;
        try {
          await waitForDrain(this.#stream);
        } catch (err) {
          this.#settle(batch, err);
          this.#failAll(err);
          return;
        }
      }
      this.#settle(batch);
    }
  }

  #settle(batch: readonly PendingFrame[], err?: unknown): void {
    for (const e of batch) {
      if (e.onAbort) e.signal?.removeEventListener('abort', e.onAbort);
      if (err === undefined) e.resolve();
      else e.reject(err);
    }
  }

  #failAll(err: unknown): void {
    const mapped = err instanceof DfsError ? err : streamClosedError(this.#stream, err);
    this.#settle(this.#pending.splice(0), mapped);
  }

  /** Ends the write side gracefully once everything written has gone to the transport. */
  async close(options: SignalOptions = {}): Promise<void> {
    while (this.#flushing) await this.#flushing;
    try {
      await this.#stream.close(options);
    } catch (err) {
      if (options.signal?.aborted) throw errorFromAbort(options.signal, `closing ${this.#stream.protocol}`);
      throw streamClosedError(this.#stream, err);
    }
  }


}

/** Sends a frame only if the stream takes it without waiting (used just before an abort). */
export function trySendNow(stream: Stream, payload: Uint8Array): void {
  try {
    if (stream.status === 'open' && stream.writeStatus === 'writable' && !stream.writableNeedsDrain) stream.send(encodeFrame(payload));
  } catch {
    // Best effort: the abort that follows tells the peer anyway.
  }
}
