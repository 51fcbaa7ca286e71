import type { Stream, StreamCloseEvent } from '@libp2p/interface';
import type { Uint8ArrayList } from 'uint8arraylist';
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
  /** Settles when every write queued so far has finished (successfully or not). */
  #queue: Promise<void> = Promise.resolve();

  constructor(stream: Stream, { maxFrameBytes = DEFAULT_MAX_FRAME_BYTES }: FrameOptions = {}) {
    this.#stream = stream;
    this.#maxFrameBytes = checkMaxFrameBytes(maxFrameBytes);
  }

  write(payload: Uint8Array | Uint8ArrayList, options: SignalOptions = {}): Promise<void> {
    const length = payload.byteLength;
    if (length > this.#maxFrameBytes) {
      return Promise.reject(
        new DfsError('ERR_PROTOCOL', `frame of ${length} bytes exceeds the ${this.#maxFrameBytes}-byte limit of ${this.#stream.protocol}`),
      );
    }
    const written = this.#queue.then(() => this.#writeNow(payload, options));
    this.#queue = written.catch(() => {});
    return written;
  }

  async #writeNow(payload: Uint8Array | Uint8ArrayList, options: SignalOptions): Promise<void> {
    const length = payload.byteLength;
    if (options.signal?.aborted) throw errorFromAbort(options.signal, `writing to ${this.#stream.protocol}`);
    await this.#drain(options);
    let accepted: boolean;
    try {
      accepted = this.#stream.send(encodeFrame(payload));
    } catch (err) {
      throw streamClosedError(this.#stream, err);
    }
    this.stats.framesWritten++;
    this.stats.payloadBytesWritten += length;
    if (!accepted) await this.#drain(options);
  }

  /** Ends the write side gracefully once everything written has gone to the transport. */
  async close(options: SignalOptions = {}): Promise<void> {
    await this.#queue;
    try {
      await this.#stream.close(options);
    } catch (err) {
      if (options.signal?.aborted) throw errorFromAbort(options.signal, `closing ${this.#stream.protocol}`);
      throw streamClosedError(this.#stream, err);
    }
  }

  async #drain(options: SignalOptions): Promise<void> {
    if (!this.#stream.writableNeedsDrain) return;
    this.stats.drainWaits++;
    await waitForDrain(this.#stream, options);
  }
}
