import type { FileHandle } from 'node:fs/promises';
import { DfsError } from '../errors/index.ts';

/**
 * What writing with O_DIRECT needs, shared by the chunk store (ChunkFileWriter) and the client's
 * downloads (FileSink): buffers, file offsets and lengths aligned to the device's block.
 */
export const ALIGN_BYTES = 4096;
const WASM_PAGE_BYTES = 64 * 1024;

// The one part of the WebAssembly global used here (the project's type libraries omit it).
declare const WebAssembly: { Memory: new (descriptor: { initial: number }) => { readonly buffer: ArrayBuffer } };

/**
 * `count` page-aligned buffers of `bytes` each (rounded up to 64 KiB), or undefined where there is
 * no WebAssembly memory (--jitless and the like). WebAssembly memory starts on a page boundary,
 * and the buffers sit at multiples of 64 KiB in it; reserved, not resident: pages are touched
 * only as far as they are used.
 */
export function alignedBuffers(count: number, bytes: number): Uint8Array[] | undefined {
  const each = roundUp(bytes, WASM_PAGE_BYTES);
  try {
    const memory = new WebAssembly.Memory({ initial: (count * each) / WASM_PAGE_BYTES });
    return Array.from({ length: count }, (_, i) => new Uint8Array(memory.buffer, i * each, each));
  } catch {
    return undefined;
  }
}

export function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

/** Whether a filesystem refused direct I/O (EINVAL: no O_DIRECT, or a misaligned request). */
export function isEinval(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'EINVAL';
}

/**
 * Writes the first `length` bytes of `bytes` at `position`, going on after short writes; an
 * error that stopped one surfaces from the next.
 */
export async function writeFully(fh: FileHandle, bytes: Uint8Array, length: number, position: number): Promise<void> {
  for (let done = 0; done < length; ) {
    const { bytesWritten } = await fh.write(bytes, done, length - done, position + done);
    if (bytesWritten <= 0) throw new DfsError('ERR_IO', `a write stopped after ${done} of ${length} bytes`);
    done += bytesWritten;
  }
}
