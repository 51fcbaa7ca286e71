import { closeSync, constants as fsc, openSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { SeededBytes } from './prng.ts';

/** Whether `dir`'s filesystem lets a file be opened with O_DIRECT (what the direct writers rely on). */
export function acceptsDirectIo(dir: string): boolean {
  try {
    closeSync(openSync(join(dir, 'direct-io-probe'), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_DIRECT, 0o644));
    return true;
  } catch {
    return false;
  }
}

/** `size` seeded bytes, and the same bytes cut into uneven pieces of 1 byte to `maxPieceBytes`. */
export function unevenPieces(rng: SeededBytes, size: number, maxPieceBytes: number): { bytes: Uint8Array; parts: Uint8Array[] } {
  const bytes = rng.bytes(size);
  const parts: Uint8Array[] = [];
  for (let at = 0; at < size; ) {
    const n = Math.min(size - at, 1 + (rng.nextU32() % maxPieceBytes));
    parts.push(bytes.subarray(at, at + n));
    at += n;
  }
  return { bytes, parts };
}

/** `fh` with one method replaced, to inject a filesystem's failure (the rest still act on the real file). */
export function withMethod<K extends keyof FileHandle>(fh: FileHandle, name: K, replacement: FileHandle[K]): FileHandle {
  return new Proxy(fh, {
    get(target, key) {
      if (key === name) return replacement;
      const value: unknown = Reflect.get(target, key);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** The error a filesystem without direct I/O answers with. */
export function einval(): Error {
  return Object.assign(new Error('EINVAL: invalid argument'), { code: 'EINVAL' });
}
