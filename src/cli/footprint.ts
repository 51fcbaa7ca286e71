import { runInNewContext } from 'node:vm';

const MiB = 1024 * 1024;
/** A full collection every this many rounds (32 MiB moved at the default 2 MiB). */
const MAJOR_EVERY = 16;

/**
 * Returns a progress hook that runs a minor GC every `everyBytes` moved, and a full one every
 * MAJOR_EVERY of those, keeping a transfer's resident memory flat (a put from stdin uses it; a
 * put from a file reads into reused buffers and a get copies into them, so neither needs it:
 * see commands/data.ts).
 *
 * Why: every file read, socket read and Noise message is a fresh buffer outside the V8 heap, and
 * V8 schedules collections by what is allocated inside it, which a transfer does slowly, so tens
 * of MiB of dead buffers can wait for one. A minor GC is cheap with the 1 MiB young generation
 * entry.ts sets. Buffers a transfer holds across two minor GCs (a read being chunked, a chunk in
 * a window) are promoted, and only a full collection frees those: measured on 512 MiB puts, peak
 * RSS 174-192 MB with minor GCs alone, 139-148 MB with a full one every 32 MiB, no slower.
 * A no-op unless the process exposed `gc` (entry.ts does, for client commands): in-process
 * callers such as the tests keep V8's own schedule.
 */
export function youngGarbageCollector(everyBytes = 2 * MiB): (bytes: number) => void {
  const gc = exposedGc();
  if (!gc) return () => {};
  let sinceLast = 0;
  let rounds = 0;
  return (bytes) => {
    sinceLast += bytes;
    if (sinceLast < everyBytes) return;
    sinceLast = 0;
    // Buffers held across two young collections (a chunk waiting in a window) move to the old
    // generation; every MAJOR_EVERY rounds a full collection frees those too.
    gc({ type: ++rounds % MAJOR_EVERY === 0 ? 'major' : 'minor' });
  };
}

type Gc = (options: { type: 'minor' | 'major' }) => void;

function exposedGc(): Gc | undefined {
  try {
    // With --expose-gc set at runtime, `gc` appears in contexts created afterwards.
    const gc: unknown = runInNewContext('typeof gc === "function" ? gc : undefined');
    return typeof gc === 'function' ? (gc as Gc) : undefined;
  } catch {
    return undefined;
  }
}
