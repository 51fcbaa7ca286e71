import { runInNewContext } from 'node:vm';

const MiB = 1024 * 1024;
/** A full collection every this many bytes moved, whatever the size of each round. */
const MAJOR_EVERY_BYTES = 64 * MiB;

/**
 * Returns a progress hook that runs a minor GC every `everyBytes` moved, and a full one every
 * MAJOR_EVERY_BYTES, keeping a transfer's resident memory flat.
 *
 * Why: every socket read, Noise message and stream read is a fresh buffer outside the V8 heap,
 * and V8 schedules collections by what is allocated inside it, which a transfer does slowly, so
 * tens of MiB of dead buffers can wait for one; a buffer a transfer held across two minor GCs
 * is promoted, and only a full collection frees it. Measured without these collections (chunk
 * bytes already in pooled buffers): a 4 GiB get peaked at 172 MB RSS and a 1 GiB put at 191 MB.
 * With them, on 1 GiB gets (each figure 2-3 runs): a minor GC every 2 MiB and a full one every
 * 64 MiB, 6.7-7.2 s and 133-136 MB; every 4 or 8 MiB, slower and larger; every 1 MiB (in effect
 * after each chunk, as progress comes per chunk), 6.2-6.3 s and 124-128 MB. Puts did not care
 * (1 GiB: 20.7-21.7 s, 134-136 MB either way). A schedule driven by the ArrayBuffer bytes the
 * process holds did worse: a minor GC's frees show up only later, so it ran full ones all the
 * time. A minor GC is cheap with the 1 MiB young generation entry.ts sets.
 *
 * Gets no longer use it (issue 16, 2 cores, 512 MiB gets, two runs each): with the chunks in
 * the window's pooled buffers, V8's own schedule took 2.6 CPU s and 150-157 MB where these
 * collections took 5.4 s and 154-165 MB. A minor GC asked for while V8 is marking incrementally
 * finishes that marking as a full collection (15-20 ms at a client's heap), which is what they
 * mostly turned into. Puts still gain: without them a 512 MiB put peaked at 186-190 MB, with
 * them at 150-157 MB, for the same CPU.
 *
 * A no-op unless the process exposed `gc` (entry.ts does, for client commands): in-process
 * callers such as the tests keep V8's own schedule.
 */
export function youngGarbageCollector(everyBytes = MiB): (bytes: number) => void {
  const gc = exposedGc();
  if (!gc) return () => {};
  let sinceLast = 0;
  let sinceMajor = 0;
  return (bytes) => {
    sinceLast += bytes;
    sinceMajor += bytes;
    if (sinceLast < everyBytes) return;
    sinceLast = 0;
    // Buffers held across two young collections (a chunk waiting in a window) move to the old
    // generation; every MAJOR_EVERY_BYTES a full collection frees those too. Counted in bytes,
    // not rounds: progress comes a chunk at a time, so a round is as large as a chunk.
    const major = sinceMajor >= MAJOR_EVERY_BYTES;
    if (major) sinceMajor = 0;
    gc({ type: major ? 'major' : 'minor' });
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
