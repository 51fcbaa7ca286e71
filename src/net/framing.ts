/**
 * Length-prefixed frames over libp2p v3 streams: the wire format (frame-format.ts), a writer that
 * honours backpressure (frame-writer.ts) and a reader that reassembles whole frames with bounded
 * memory (frame-reader.ts).
 */
export {
  DEFAULT_FRAME_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MIN_FRAME_BYTES_PER_SECOND,
  DEFAULT_READ_HIGH_WATER_BYTES,
  encodeFrame,
  FRAME_HEADER_BYTES,
  MAX_STREAM_READ_BUFFER_BYTES,
  MAX_STREAM_WINDOW_BYTES,
  streamClosedError,
  streamPeer,
  tagStreamPeer,
} from './frame-format.ts';
export type { FrameOptions, SignalOptions } from './frame-format.ts';
export { FrameWriter, trySendNow, waitForDrain } from './frame-writer.ts';
export type { FrameWriterStats } from './frame-writer.ts';
export { DEFAULT_RECEIVE_BUDGET, FrameReader, processReceiveBudget, ReceiveBudget } from './frame-reader.ts';
export type { FrameReaderOptions, FrameReaderStats, ReceiveBudgetLimits, ReceiveBudgetStats } from './frame-reader.ts';
