import { createBLAKE3 } from 'hash-wasm';
import { DfsError } from '../errors/index.ts';

/** An incremental BLAKE3-256 hasher, reusable through `reset`. */
export interface Blake3Hasher {
  reset(): this;
  update(data: Uint8Array): this;
  /** The 32-byte digest as 64 lowercase hex characters; the hasher must be reset before reuse. */
  digestHex(): string;
}

export type Blake3Backend = 'native' | 'wasm';

/**
 * BLAKE3-256. The wasm build (hash-wasm) works everywhere; the native one (@napi-rs/blake-hash,
 * an optional dependency) is ~8x faster and is used when it loads. Both give identical digests
 * (tested), so the choice never changes a chunk id.
 */
export interface Blake3 {
  readonly backend: Blake3Backend;
  createHasher(): Promise<Blake3Hasher>;
  /** One-shot digest of the concatenation of `parts`, as hex. Synchronous, so safe to share. */
  hashHex(parts: Uint8Array | readonly Uint8Array[]): string;
}

export type Blake3Preference = Blake3Backend | 'auto';

const cache = new Map<Blake3Preference, Promise<Blake3>>();

/**
 * Loads a BLAKE3 implementation. `auto` (the default, or env DFS_BLAKE3) prefers native and
 * falls back to wasm; `native` fails if the accelerator is missing.
 */
export function loadBlake3(preference?: Blake3Preference): Promise<Blake3> {
  const pref = preference ?? parsePreference(process.env.DFS_BLAKE3);
  let loaded = cache.get(pref);
  if (!loaded) {
    loaded = pref === 'wasm' ? loadWasm() : loadNative().then((n) => n ?? (pref === 'native' ? missingNative() : loadWasm()));
    cache.set(pref, loaded);
  }
  return loaded;
}

function parsePreference(value: string | undefined): Blake3Preference {
  if (value === undefined || value === '' || value === 'auto') return 'auto';
  if (value === 'native' || value === 'wasm') return value;
  throw new DfsError('ERR_INVALID_ARGUMENT', `DFS_BLAKE3 must be auto, native or wasm, not "${value}"`);
}

function missingNative(): never {
  throw new DfsError('ERR_INVALID_ARGUMENT', 'native BLAKE3 (@napi-rs/blake-hash) is not installed; use DFS_BLAKE3=wasm');
}

async function loadWasm(): Promise<Blake3> {
  const make = async (): Promise<Blake3Hasher> => {
    const inner = await createBLAKE3(256);
    const hasher: Blake3Hasher = {
      reset() { inner.init(); return hasher; },
      update(data) { inner.update(data); return hasher; },
      digestHex() { return inner.digest('hex'); },
    };
    return hasher;
  };
  const shared = await make();
  return {
    backend: 'wasm',
    createHasher: make,
    hashHex: (parts) => oneShot(shared, parts),
  };
}

interface NativeModule {
  Blake3Hasher: new () => {
    reset(): void;
    update(input: Uint8Array): unknown;
    digest(format?: string): string;
  };
}

async function loadNative(): Promise<Blake3 | undefined> {
  let mod: NativeModule;
  try {
    mod = (await import('@napi-rs/blake-hash')) as unknown as NativeModule;
    if (typeof mod.Blake3Hasher !== 'function') return undefined;
  } catch {
    return undefined;
  }
  const make = (): Blake3Hasher => {
    const inner = new mod.Blake3Hasher();
    const hasher: Blake3Hasher = {
      reset() { inner.reset(); return hasher; },
      update(data) { inner.update(data); return hasher; },
      digestHex() { return inner.digest('hex'); },
    };
    return hasher;
  };
  const shared = make();
  return {
    backend: 'native',
    createHasher: async () => make(),
    hashHex: (parts) => oneShot(shared, parts),
  };
}

function oneShot(hasher: Blake3Hasher, parts: Uint8Array | readonly Uint8Array[]): string {
  hasher.reset();
  if (parts instanceof Uint8Array) hasher.update(parts);
  else for (const p of parts) hasher.update(p);
  return hasher.digestHex();
}
