import { type Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface';
import type { Uint8ArrayList } from 'uint8arraylist';

/**
 * An in-memory stand-in for the receiving end of a libp2p stream, as much of it as FrameReader
 * and SnapshotReceiver use: 'message', 'end' and 'close' events, pause/resume (bytes pushed
 * while paused wait, and arrive on resume, as @libp2p/utils does), abort and close. The test
 * plays the remote peer: push() delivers bytes, end() closes the remote's write side.
 */
export class FakeStream extends EventTarget {
  readonly id = 'fuzz-stream';
  readonly protocol: string;
  status: 'open' | 'closing' | 'closed' | 'aborted' | 'reset' = 'open';
  readStatus: 'readable' | 'paused' | 'closing' | 'closed' = 'readable';
  readableEnded = false;
  /** The error this side aborted with, if it did. */
  abortedWith: Error | undefined;
  pauses = 0;
  readonly #queued: Array<Uint8Array | Uint8ArrayList> = [];
  #endPending = false;

  constructor(protocol = '/dfs/fuzz/1.0.0') {
    super();
    this.protocol = protocol;
  }

  /** This fake as the libp2p type the code under test takes. */
  get stream(): Stream {
    return this as unknown as Stream;
  }

  /** The remote sends `chunk` (delivered now, or on resume while paused). */
  push(chunk: Uint8Array | Uint8ArrayList): void {
    if (this.status !== 'open' || this.#endPending) return;
    if (this.readStatus === 'paused') this.#queued.push(chunk);
    else this.dispatchEvent(new StreamMessageEvent(chunk));
  }

  /** The remote closes its write side: 'end' once everything pushed was delivered, then 'close'. */
  end(): void {
    if (this.status !== 'open') return;
    this.#endPending = true;
    if (this.#queued.length === 0) this.#finishEnd();
  }

  pause(): void {
    if (this.readStatus === 'readable') {
      this.readStatus = 'paused';
      this.pauses++;
    }
  }

  resume(): void {
    if (this.readStatus !== 'paused') return;
    this.readStatus = 'readable';
    while (this.#queued.length > 0 && this.readStatus === 'readable' && this.status === 'open') {
      this.dispatchEvent(new StreamMessageEvent(this.#queued.shift()!));
    }
    if (this.#endPending && this.#queued.length === 0) this.#finishEnd();
  }

  abort(err: Error): void {
    if (this.status === 'aborted' || this.status === 'closed' || this.status === 'reset') return;
    this.status = 'aborted';
    this.readStatus = 'closed';
    this.abortedWith = err;
    this.#queued.length = 0;
    this.dispatchEvent(new StreamCloseEvent(true, err));
  }

  /** This side closes (its write side; the remote's was closed already where it matters). */
  close(): Promise<void> {
    if (this.status === 'open') this.status = 'closing';
    return Promise.resolve();
  }

  #finishEnd(): void {
    if (this.status !== 'open' || this.readableEnded) return;
    this.readableEnded = true;
    this.readStatus = 'closed';
    this.dispatchEvent(new Event('end'));
    this.status = 'closed';
    this.dispatchEvent(new StreamCloseEvent(false));
  }
}
