import type { Stream } from '@libp2p/interface';
import { Uint8ArrayList } from 'uint8arraylist';
import { DfsError } from '../errors/index.ts';

/**
 * Length-prefixed frames over a libp2p v3 stream: a 4-byte big-endian payload length, then the
 * payload. A fixed-size prefix (not a varint) lets the reader refuse an oversized frame as soon as
 * 4 bytes have arrived.
 */
export const FRAME_HEADER_BYTES = 4;

/** Default bound on one frame's payload: 4 MiB. Protocols that move chunks set their own. */
export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024;

/** Default read buffer level above which the reader pauses the stream (see FrameReader). */
export const DEFAULT_READ_HIGH_WATER_BYTES = 1024 * 1024;

/**
 * Yamux flow control: a stream's receive window may grow up to this (peer.ts configures the
 * muxer with it). When a reader pauses a stream, the sender may still deliver what is left of
 * the window, which the stream buffers.
 */
export const MAX_STREAM_WINDOW_BYTES = 4 * 1024 * 1024;

/**
 * What a paused stream may buffer before the muxer resets it (must exceed the window); resume()
 * hands all of it to the reader at once, so it is also the largest single delivery a reader sees.
 */
export const MAX_STREAM_READ_BUFFER_BYTES = 2 * MAX_STREAM_WINDOW_BYTES;

/** Default bound on a partly received frame standing still (no byte) before the stream is reset. */
export const DEFAULT_FRAME_IDLE_TIMEOUT_MS = 30_000;

/**
 * Default slowest pace of a partly received frame, once it has been arriving for the idle
 * timeout: a peer that trickles a byte now and then (never idle) is reset as well.
 */
export const DEFAULT_MIN_FRAME_BYTES_PER_SECOND = 64 * 1024;

const MAX_FRAME_LIMIT = 0xffff_ffff;

export interface FrameOptions {
  /** Frames with a larger payload are refused with ERR_PROTOCOL. */
  readonly maxFrameBytes?: number;
}

export interface SignalOptions {
  readonly signal?: AbortSignal;
}

export function checkMaxFrameBytes(maxFrameBytes: number): number {
  if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 0 || maxFrameBytes > MAX_FRAME_LIMIT) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `maxFrameBytes must be an integer in [0, ${MAX_FRAME_LIMIT}], got ${maxFrameBytes}`);
  }
  return maxFrameBytes;
}

/** The DfsError for a stream that closed with `error`; our own DfsErrors pass through. */
export function streamClosedError(stream: Stream, error: unknown): DfsError {
  if (error instanceof DfsError) return error;
  const detail = error instanceof Error ? `: ${error.message}` : '';
  return new DfsError('ERR_STREAM_CLOSED', `stream ${stream.protocol || stream.id} closed${detail}`, { cause: error });
}

/** The frame for `payload` (header + payload, not copied), for a raw stream.send(). */
export function encodeFrame(payload: Uint8Array | Uint8ArrayList): Uint8ArrayList {
  const header = new Uint8Array(FRAME_HEADER_BYTES);
  new DataView(header.buffer).setUint32(0, payload.byteLength, false);
  return new Uint8ArrayList(header, payload);
}

/**
 * The remote peer of each stream DfsPeer opened or accepted, so per-peer bounds (FrameReader's
 * receive budget, serveMuxRpc's) apply without every caller passing the peer along.
 */
const streamPeers = new WeakMap<Stream, string>();

/** Records `peerId` as the remote end of `stream` (done by DfsPeer for every stream). */
export function tagStreamPeer(stream: Stream, peerId: string): void {
  streamPeers.set(stream, peerId);
}

/** The remote peer id of `stream`, or undefined for a stream DfsPeer did not make. */
export function streamPeer(stream: Stream): string | undefined {
  return streamPeers.get(stream);
}
