/**
 * Content-defined chunking (FastCDC 2020, normalised level 2) and BLAKE3 chunk ids.
 * The same bytes always cut the same way under one CHUNKER_ID, whatever the read sizes.
 */
export { CHUNKER_ID, DEFAULT_CHUNKER_PARAMS, CHUNKER_LIMITS, validateChunkerParams } from './params.ts';
export type { ChunkerParams } from './params.ts';
export { cut, chunkBoundaries, CutScanner } from './cut.ts';
export { chunkStream, chunkBuffer } from './stream.ts';
export type { Chunk, ChunkStreamOptions } from './stream.ts';
export { loadBlake3 } from './blake3.ts';
export type { Blake3, Blake3Hasher, Blake3Backend, Blake3Preference } from './blake3.ts';
export { isChunkId, assertChunkId } from './chunk-id.ts';
export type { ChunkId } from './chunk-id.ts';
