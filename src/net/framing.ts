/**
 * Length-prefixed frames over libp2p v3 streams: the wire format (frame-format.ts), a writer that
 * honours backpressure (frame-writer.ts) and a reader that reassembles whole frames with bounded
 * memory (frame-reader.ts).
 */
export {
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_READ_HIGH_WATER_BYTES,
  encodeFrame,
  FRAME_HEADER_BYTES,
  streamClosedError,
} from './frame-format.ts';
export type { FrameOptions, SignalOptions } from './frame-format.ts';
export { FrameWriter, trySendNow, waitForDrain } from './frame-writer.ts';
export type { FrameWriterStats } from './frame-writer.ts';
export { FrameReader } from './frame-reader.ts';
export type { FrameReaderOptions, FrameReaderStats } from './frame-reader.ts';
