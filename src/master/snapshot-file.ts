import { createHash, randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { DfsError, fromSystemError } from '../errors/index.ts';

/** Snapshot bytes are hashed and written this many at a time, with a turn of the event loop between. */
const PIECE_BYTES = 4 * 1024 * 1024;

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Where a snapshot file lies and what it must hold. */
export interface SnapshotFileInfo {
  /** The file's name in the snapshot directory. */
  readonly file: string;
  readonly bytes: number;
  /** SHA-256 of the bytes, hex. */
  readonly sha256: string;
}

/** SHA-256 of `data` as hex, hashed 4 MiB per event-loop turn. */
export async function sha256Hex(data: Uint8Array): Promise<string> {
  const hash = createHash('sha256');
  for (let at = 0; at < data.length; at += PIECE_BYTES) {
    if (at > 0) await nextTurn();
    hash.update(data.subarray(at, at + PIECE_BYTES));
  }
  return hash.digest('hex');
}

/** A new, unique file name for the snapshot at (index, term): `<index>-<term>-<random>.snap`. */
export function snapshotFileName(index: number, term: number): string {
  const hex = (n: number): string => n.toString(16).padStart(16, '0');
  return `${hex(index)}-${hex(term)}-${randomBytes(4).toString('hex')}.snap`;
}

/**
 * Writes `data` as `dir/name` durably and atomically: into `name.tmp`, fsync, rename, fsync of
 * the directory. When this resolves the file is whole on disk under its name; if it fails (or
 * the process dies) there is at most a `.tmp` file, which `removeStrayFiles` clears.
 */
export async function writeSnapshotFile(dir: string, name: string, data: Uint8Array): Promise<SnapshotFileInfo> {
  const final = join(dir, name);
  const temp = `${final}.tmp`;
  const hash = createHash('sha256');
  try {
    const fh = await open(temp, 'wx', 0o600);
    try {
      for (let at = 0; at < data.length; at += PIECE_BYTES) {
        const piece = data.subarray(at, at + PIECE_BYTES);
        hash.update(piece);
        for (let done = 0; done < piece.length; ) done += (await fh.write(piece, done, piece.length - done)).bytesWritten;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(temp, final);
    await syncDir(dir);
  } catch (err) {
    await unlink(temp).catch(() => {});
    throw fromSystemError(err, `cannot write the snapshot file ${final}`);
  }
  return { file: name, bytes: data.length, sha256: hash.digest('hex') };
}

/** Reads a snapshot file back and checks its length and digest; ERR_IO if anything is off. */
export async function readSnapshotFile(dir: string, info: SnapshotFileInfo): Promise<Uint8Array> {
  const path = join(dir, info.file);
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (err) {
    throw fromSystemError(err, `cannot read the snapshot file ${path} that the raft log points at`);
  }
  const data = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  if (data.length !== info.bytes) throw new DfsError('ERR_IO', `snapshot file ${path} has ${data.length} bytes, the raft log says ${info.bytes}`);
  const digest = await sha256Hex(data);
  if (digest !== info.sha256) throw new DfsError('ERR_IO', `snapshot file ${path} is corrupt (SHA-256 ${digest}, the raft log says ${info.sha256})`);
  return data;
}

/** Removes every file in `dir` but `keep` (left by a crash or superseded); returns their names. */
export async function removeStrayFiles(dir: string, keep: ReadonlySet<string>): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (keep.has(name)) continue;
    await unlink(join(dir, name)).then(
      () => removed.push(name),
      () => {},
    );
  }
  return removed;
}

/** fsync of a directory, so that a rename or a new file in it is durable. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
