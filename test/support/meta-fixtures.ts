import { CHUNKER_ID, DEFAULT_CHUNKER_PARAMS } from '../../src/chunker/index.ts';
import type { Manifest } from '../../src/meta/index.ts';

/** A valid manifest over made-up chunk ids (the state machine never sees chunk bytes). */
export function manifestOf(chunks: Array<[string, number]>): Manifest {
  const size = chunks.reduce((n, [, l]) => n + l, 0);
  return { chunker: CHUNKER_ID, params: DEFAULT_CHUNKER_PARAMS, size, blake3: 'f'.repeat(64), chunks };
}

/** A fake chunk id made from a small number: 64 hex digits. */
export function cid(n: number): string {
  return n.toString(16).padStart(64, '0');
}
