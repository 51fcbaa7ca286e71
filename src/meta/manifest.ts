import { type Blake3, CHUNKER_ID, type ChunkerParams, isChunkId, validateChunkerParams } from '../chunker/index.ts';
import { DfsError, isDfsError } from '../errors/index.ts';

/**
 * A file's content: which chunker cut it, its chunks in order, its size and whole-file BLAKE3.
 * Stored inline in the file's namespace entry (and so in the Raft log).
 */
export interface Manifest {
  readonly chunker: string;
  readonly params: ChunkerParams;
  readonly size: number;
  /** BLAKE3-256 of the whole file, hex: checked by `get` after reassembly. */
  readonly blake3: string;
  /** [chunk id, length] in file order. */
  readonly chunks: ReadonlyArray<readonly [string, number]>;
}

/**
 * Manifests ride in the Raft log, so they are bounded: 65,536 chunks is a 128 GiB file at the
 * default 2 MiB average (about 4.6 MB of log entry). Larger files need manifests of manifests.
 */
export const MAX_MANIFEST_CHUNKS = 65_536;

/** Validates an untrusted manifest and returns it in canonical form (fixed key order). */
export function validateManifest(input: unknown): Manifest {
  const fail = (why: string): never => {
    throw new DfsError('ERR_INVALID_MANIFEST', `invalid manifest: ${why}`);
  };
  if (typeof input !== 'object' || input === null) return fail('not an object');
  const m = input as Record<string, unknown>;
  // Never JSON.stringify or Number() an untrusted value: a deeply nested one overflows the stack,
  // an object whose toString is not a function throws converting itself.
  if (m.chunker !== CHUNKER_ID) fail(`unknown chunker ${typeof m.chunker === 'string' ? JSON.stringify(m.chunker.slice(0, 64)) : `<${typeof m.chunker}>`} (this cluster knows ${CHUNKER_ID})`);
  let params: ChunkerParams;
  try {
    const p = (typeof m.params === 'object' && m.params !== null ? m.params : {}) as Record<string, unknown>;
    const num = (v: unknown): number => (typeof v === 'number' ? v : Number.NaN);
    params = validateChunkerParams({ minSize: num(p.minSize), avgSize: num(p.avgSize), maxSize: num(p.maxSize) });
  } catch (err) {
    return fail(isDfsError(err) ? err.message : 'bad chunker parameters');
  }
  if (!Number.isSafeInteger(m.size) || (m.size as number) < 0) fail('size must be a non-negative integer');
  if (typeof m.blake3 !== 'string' || !isChunkId(m.blake3)) fail('blake3 must be 64 lowercase hex characters');
  if (!Array.isArray(m.chunks)) return fail('chunks must be an array');
  if (m.chunks.length > MAX_MANIFEST_CHUNKS) fail(`more than ${MAX_MANIFEST_CHUNKS} chunks`);
  let total = 0;
  const chunks = m.chunks.map((c: unknown, i: number): [string, number] => {
    if (!Array.isArray(c) || c.length !== 2) return fail(`chunks[${i}] must be [id, length]`);
    const [id, length] = c as [unknown, unknown];
    if (!isChunkId(id)) fail(`chunks[${i}] has a bad id`);
    if (!Number.isSafeInteger(length) || (length as number) <= 0 || (length as number) > params.maxSize) {
      fail(`chunks[${i}] length must be 1..${params.maxSize}`);
    }
    total += length as number;
    return [id as string, length as number];
  });
  if (total !== m.size) fail(`chunk lengths add up to ${total}, not to the size ${m.size as number}`);
  const manifest: Manifest = {
    chunker: CHUNKER_ID,
    params: { minSize: params.minSize, avgSize: params.avgSize, maxSize: params.maxSize },
    size: m.size as number,
    blake3: m.blake3 as string,
    chunks,
  };
  validated.add(manifest);
  return manifest;
}

/** Manifests validateManifest returned: canonical already, so not checked twice (see MetaState). */
const validated = new WeakSet<Manifest>();

/** `input` if validateManifest already returned it, else validateManifest(input). */
export function checkedManifest(input: unknown): Manifest {
  return typeof input === 'object' && input !== null && validated.has(input as Manifest) ? (input as Manifest) : validateManifest(input);
}

/** The canonical bytes of a (validated) manifest: JSON with a fixed key order. */
export function encodeManifest(m: Manifest): Uint8Array {
  const canonical = {
    chunker: m.chunker,
    params: { minSize: m.params.minSize, avgSize: m.params.avgSize, maxSize: m.params.maxSize },
    size: m.size,
    blake3: m.blake3,
    chunks: m.chunks.map(([id, length]) => [id, length]),
  };
  return new TextEncoder().encode(JSON.stringify(canonical));
}

/** A manifest's own id: BLAKE3 of its canonical bytes. */
export function manifestId(m: Manifest, blake3: Blake3): string {
  return blake3.hashHex(encodeManifest(m));
}
