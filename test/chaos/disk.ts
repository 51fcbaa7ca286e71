import { execFile, execFileSync } from 'node:child_process';
import { open, readdir, readFile, rm, stat, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Blake3 } from '../../src/chunker/index.ts';
import type { MetaClient } from '../../src/client/index.ts';
import type { NodeView } from '../../src/meta/index.ts';
import type { Procs } from './procs.ts';

const run = promisify(execFile);

/**
 * Disk faults: a node whose data directory is a small tmpfs (filled up and freed on schedule),
 * chunk files corrupted or deleted under a running node, and the audit of what is on disk.
 * A node's chunk files live at <node dir>/chunks/chunks/ab/cd/<id> (its ChunkStore is at
 * <node dir>/chunks; see src/storage/layout.ts).
 */
export function chunkPath(nodeDir: string, id: string): string {
  return join(nodeDir, 'chunks', 'chunks', id.slice(0, 2), id.slice(2, 4), id);
}

export class SmallDisk {
  readonly #filler: string;
  #filled = false;
  readonly dir: string;
  readonly bytes: number;

  private constructor(dir: string, bytes: number) {
    this.dir = dir;
    this.bytes = bytes;
    this.#filler = join(dir, 'chaos-filler');
  }

  /** Mounts a tmpfs of `bytes` at `dir` (root only), owned by `uid`:`gid`. */
  static async mount(dir: string, bytes: number, uid: number, gid: number): Promise<SmallDisk> {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${bytes},uid=${uid},gid=${gid},mode=0700`, 'tmpfs', dir]);
    return new SmallDisk(dir, bytes);
  }

  /** Fills the disk until `leaveBytes` are free; returns the bytes written. */
  async fill(leaveBytes: number): Promise<number> {
    const s = await statfs(this.dir);
    const free = s.bavail * s.bsize;
    const want = Math.max(0, free - leaveBytes);
    const file = await open(this.#filler, 'a');
    this.#filled = true;
    const block = Buffer.alloc(1 << 20, 0xcd);
    let written = 0;
    try {
      while (written < want) {
        const n = Math.min(block.length, want - written);
        try {
          await file.write(block, 0, n);
        } catch {
          break; // full already (the node wrote meanwhile)
        }
        written += n;
      }
    } finally {
      await file.close();
    }
    return written;
  }

  async free(): Promise<void> {
    if (!this.#filled) return;
    await unlink(this.#filler).catch(() => {});
    this.#filled = false;
  }

  async freeBytes(): Promise<number> {
    const s = await statfs(this.dir);
    return s.bavail * s.bsize;
  }

  /** Unmounts (lazily: a process that has not died yet cannot keep it). */
  async unmount(): Promise<void> {
    await run('umount', ['-l', this.dir]).catch(() => {});
  }

  unmountSync(): void {
    try {
      execFileSync('umount', ['-l', this.dir], { stdio: 'ignore' });
    } catch {
      // not mounted
    }
  }
}

/** Every chunk file a node has on disk, sorted by id. */
export async function chunkFiles(nodeDir: string): Promise<string[]> {
  const root = join(nodeDir, 'chunks', 'chunks');
  const ids: string[] = [];
  for (const outer of await readdir(root).catch(() => [] as string[])) {
    for (const inner of await readdir(join(root, outer)).catch(() => [] as string[])) {
      for (const name of await readdir(join(root, outer, inner)).catch(() => [] as string[])) {
        if (/^[0-9a-f]{64}$/.test(name)) ids.push(name);
      }
    }
  }
  return ids.sort();
}

/** Overwrites one byte of a chunk file (at a seeded offset) with a different one. */
export async function corruptChunkFile(path: string, pick: number): Promise<string> {
  const { size } = await stat(path);
  if (size === 0) {
    const f = await open(path, 'r+');
    await f.write(Buffer.from([pick & 0xff]), 0, 1, 0);
    await f.close();
    return 'appended a byte to an empty chunk';
  }
  const offset = pick % size;
  const f = await open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await f.read(b, 0, 1, offset);
    b[0] = b[0]! ^ (1 + (pick >>> 24) % 255);
    await f.write(b, 0, 1, offset);
  } finally {
    await f.close();
  }
  return `flipped bits of byte ${offset} of ${size}`;
}

export async function deleteChunkFile(path: string): Promise<void> {
  await rm(path, { force: true });
}

/** Whether the file at `path` holds exactly the chunk `id`. */
export async function chunkIntact(path: string, id: string, blake3: Blake3): Promise<boolean> {
  const bytes = await readFile(path).catch(() => undefined);
  return bytes !== undefined && blake3.hashHex(bytes) === id;
}

/**
 * What is known about chunk `id` right now: the holders the leader names, each node's state,
 * and what each node's disk has (intact, damaged, or no file).
 */
export async function inspectChunk(id: string, procs: Procs, meta: MetaClient, blake3: Blake3): Promise<string> {
  const [located, views] = await Promise.all([
    meta.leaderRequest({ type: 'locate', ids: [id] }).catch((e: unknown) => (e as Error).message),
    procs.nodeViews(meta).catch(() => new Map<string, NodeView>()),
  ]);
  const holders = Array.isArray(located)
    ? ((located as Array<{ holders: string[] }>)[0]?.holders ?? []).map((addr) => procs.nameOfPeer(addr.slice(addr.lastIndexOf('/') + 1)) ?? addr)
    : [`(locate failed: ${String(located)})`];
  const disks: string[] = [];
  for (const node of procs.nodes) {
    const path = chunkPath(procs.dirOf(node), id);
    const bytes = await readFile(path).catch(() => undefined);
    const onDisk = bytes === undefined ? 'no file' : blake3.hashHex(bytes) === id ? 'intact' : 'DAMAGED';
    disks.push(`${node} (${views.get(node)?.state ?? '?'}, ${procs.state(node)}): ${onDisk}`);
  }
  return `chunk ${id.slice(0, 16)}: the leader names ${holders.join(', ') || 'no holder'}; disks: ${disks.join('; ')}`;
}
