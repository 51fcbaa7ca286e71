import { DfsError } from '../errors/index.ts';

/**
 * A chunk id: BLAKE3-256 of the chunk's bytes, written as 64 lowercase hex characters. Hex (not
 * base32) because it is what every BLAKE3 tool prints (`b3sum`), so an operator can check a chunk
 * file by hand, and because its prefix shards the store's directories evenly.
 */
export type ChunkId = string;

const CHUNK_ID_PATTERN = /^[0-9a-f]{64}$/;

export function isChunkId(value: unknown): value is ChunkId {
  return typeof value === 'string' && CHUNK_ID_PATTERN.test(value);
}

export function assertChunkId(value: unknown): ChunkId {
  if (!isChunkId(value)) {
    const shown = typeof value === 'string' ? `"${value.slice(0, 80)}"` : typeof value;
    throw new DfsError('ERR_INVALID_CHUNK_ID', `not a chunk id: ${shown} (want 64 lowercase hex characters)`);
  }
  return value;
}
