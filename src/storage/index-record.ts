/** What the index keeps per chunk. Times are milliseconds since the epoch, from the store's clock. */
export interface ChunkRecord {
  readonly size: number;
  readonly storedAtMs: number;
  readonly verifiedAtMs: number;
}

export const CHUNK_KEY_PREFIX = 'c:';
export const STATE_KEY = 'm:state';

export function chunkKey(id: string): string {
  return CHUNK_KEY_PREFIX + id;
}

// 24 bytes: three float64s. Compact for millions of entries, and exact for sizes and times.
export function encodeRecord(r: ChunkRecord): Uint8Array {
  const out = new Uint8Array(24);
  const view = new DataView(out.buffer);
  view.setFloat64(0, r.size);
  view.setFloat64(8, r.storedAtMs);
  view.setFloat64(16, r.verifiedAtMs);
  return out;
}

export function decodeRecord(bytes: Uint8Array): ChunkRecord | undefined {
  if (bytes.length !== 24) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const record = { size: view.getFloat64(0), storedAtMs: view.getFloat64(8), verifiedAtMs: view.getFloat64(16) };
  return Number.isSafeInteger(record.size) && record.size >= 0 ? record : undefined;
}
