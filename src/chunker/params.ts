import { DfsError } from '../errors/index.ts';

/** The chunker id recorded in every manifest: algorithm, gear table and mask layout. */
export const CHUNKER_ID = 'fastcdc2020-v1';

export interface ChunkerParams {
  readonly minSize: number;
  readonly avgSize: number;
  readonly maxSize: number;
}

/**
 * Average 2 MiB, within [512 KiB, 4 MiB]. Every chunk costs a fixed amount beside its bytes: a
 * placement entry and a ticket from the leader, a receipt from each of RF nodes (signed there,
 * checked by the leader), and on each node a file created and fsynced with its directory. At a
 * 1 MiB average that fixed part was about a fifth of a put's CPU (bench/pipeline-cpu.ts: 27.6
 * CPU s/GiB with 1 MiB chunks, 22.9 with 4 MiB); 2 MiB halves it while keeping the largest chunk,
 * and so every buffer sized for one (client pool, node receive budget), where it was. Past the
 * average the mask has two fewer bits, so only about e^-4 (1.8%) of chunks run to the maximum.
 */
export const DEFAULT_CHUNKER_PARAMS: ChunkerParams = Object.freeze({
  minSize: 512 * 1024,
  avgSize: 2 * 1024 * 1024,
  maxSize: 4 * 1024 * 1024,
});

/** Bounds that keep the masks inside 32 bits and a chunk's memory bounded. */
export const CHUNKER_LIMITS = Object.freeze({
  minSizeFloor: 64,
  avgSizeFloor: 256,
  avgSizeCeiling: 256 * 1024 * 1024,
  maxSizeCeiling: 64 * 1024 * 1024,
});

/**
 * Normalised chunking level 2 (FastCDC 2020, section 3.3): before the average size the mask has
 * two more one-bits (harder to match), after it two fewer (easier), which narrows the size
 * distribution around the average.
 */
export const NORMALIZATION_LEVEL = 2;

export function validateChunkerParams(params: ChunkerParams): ChunkerParams {
  const { minSize, avgSize, maxSize } = params;
  const fail = (why: string): never => {
    throw new DfsError('ERR_INVALID_ARGUMENT', `invalid chunker parameters (min ${minSize}, avg ${avgSize}, max ${maxSize}): ${why}`);
  };
  for (const [name, v] of [['min', minSize], ['avg', avgSize], ['max', maxSize]] as const) {
    if (!Number.isSafeInteger(v) || v <= 0) fail(`${name} size must be a positive integer`);
  }
  if (minSize < CHUNKER_LIMITS.minSizeFloor) fail(`min size must be at least ${CHUNKER_LIMITS.minSizeFloor} bytes`);
  if (avgSize < CHUNKER_LIMITS.avgSizeFloor || avgSize > CHUNKER_LIMITS.avgSizeCeiling) {
    fail(`avg size must be between ${CHUNKER_LIMITS.avgSizeFloor} and ${CHUNKER_LIMITS.avgSizeCeiling} bytes`);
  }
  if ((avgSize & (avgSize - 1)) !== 0) fail('avg size must be a power of two');
  if (!(minSize < avgSize && avgSize < maxSize)) fail('sizes must satisfy min < avg < max');
  if (maxSize > CHUNKER_LIMITS.maxSizeCeiling) fail(`max size must be at most ${CHUNKER_LIMITS.maxSizeCeiling} bytes`);
  return Object.freeze({ minSize, avgSize, maxSize });
}

/**
 * A mask of `ones` one-bits at bits 30 down to 31-ones. Bit k of the gear hash depends on the
 * last k+1 bytes, so high bits see the widest window; bit 31 is left free so that `mask << 1`
 * still fits in 32 bits, which FastCDC's two-bytes-per-step scan needs, should it ever measure
 * faster than ours (it does not today). Part of `fastcdc2020-v1`: never change it.
 */
export function maskOfOnes(ones: number): number {
  if (!(ones >= 1 && ones <= 31)) throw new Error(`mask width ${ones} out of range`);
  return ((2 ** ones - 1) * 2 ** (31 - ones)) | 0;
}
