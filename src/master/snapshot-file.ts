import { constants as bufferConstants } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import { open, readdir, rename, unlink } from 'node:fs/promises';
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

export interface ReadSnapshotOptions {
  /**
   * Files larger than this are refused (ERR_IO) before anything is allocated; default and upper
   * bound: buffer.constants.MAX_LENGTH, the largest Uint8Array this Node can make.
   */
  readonly maxBytes?: number;
  /** Bytes read (and hashed) per call, one event-loop turn each; default 4 MiB. For tests. */
  readonly pieceBytes?: number;
}

/**
 * Reads the whole file at `path`, which must hold exactly `bytes` bytes (and hash to `sha256`,
 * hex, if given), into one Uint8Array of that size: in pieces through a file handle, hashing
 * as it goes, because readFile refuses files over 2 GiB (ERR_FS_FILE_TOO_LARGE) while a
 * snapshot may be larger. ERR_IO (`what` names the file in the message) if the file cannot be
 * read, is larger than the limit, is shorter or longer than `bytes`, or hashes differently.
 */
export async function readWholeFile(
  path: string,
  expect: { readonly bytes: number; readonly sha256?: string },
  what: string,
  options: ReadSnapshotOptions = {},
): Promise<Uint8Array> {
  const limit = Math.min(options.maxBytes ?? bufferConstants.MAX_LENGTH, bufferConstants.MAX_LENGTH);
  const pieceBytes = options.pieceBytes ?? PIECE_BYTES;
  if (!Number.isSafeInteger(pieceBytes) || pieceBytes <= 0) throw new RangeError(`pieceBytes must be a positive integer, got ${pieceBytes}`);
  const tooLarge = (size: number): DfsError =>
    new DfsError('ERR_IO', `${what} is ${size} bytes, over the ${limit}-byte limit of what can be read into memory (${limitName(limit, options.maxBytes)})`);
  if (expect.bytes > limit) throw tooLarge(expect.bytes);
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw fromSystemError(err, `cannot read ${what}`);
  }
  try {
    const size = (await fh.stat()).size;
    if (size > limit) throw tooLarge(size);
    if (size !== expect.bytes) throw new DfsError('ERR_IO', `${what} has ${size} bytes, expected ${expect.bytes}`);
    let data: Uint8Array;
    try {
      // Not zero-filled (seconds for GiBs): every byte is read into it, or it is dropped.
      const buf = Buffer.allocUnsafeSlow(size);
      data = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch (err) {
      throw new DfsError('ERR_IO', `cannot read ${what}: cannot allocate ${size} bytes (${(err as Error).message})`, { cause: err });
    }
    const hash = expect.sha256 === undefined ? undefined : createHash('sha256');
    let at = 0;
    while (at < size) {
      const { bytesRead } = await fh.read(data, at, Math.min(pieceBytes, size - at), at);
      if (bytesRead === 0) throw new DfsError('ERR_IO', `${what} ended after ${at} of ${size} bytes (truncated while being read)`);
      hash?.update(data.subarray(at, at + bytesRead));
      at += bytesRead;
      await nextTurn();
    }
    // The file must end here: one that grew after the stat is not the file that was written.
    if ((await fh.read(new Uint8Array(1), 0, 1, size)).bytesRead !== 0) throw new DfsError('ERR_IO', `${what} has more than the ${size} bytes expected (it grew while being read)`);
    if (hash !== undefined) {
      const digest = hash.digest('hex');
      if (digest !== expect.sha256) throw new DfsError('ERR_IO', `${what} is corrupt (SHA-256 ${digest}, expected ${expect.sha256})`);
    }
    return data;
  } catch (err) {
    throw fromSystemError(err, `cannot read ${what}`);
  } finally {
    await fh.close().catch(() => {});
  }
}

function limitName(limit: number, maxBytes: number | undefined): string {
  return maxBytes !== undefined && maxBytes <= bufferConstants.MAX_LENGTH ? 'the configured maximum snapshot size' : 'buffer.constants.MAX_LENGTH';
}

/** Reads a snapshot file back and checks its length and digest; ERR_IO if anything is off. */
export async function readSnapshotFile(dir: string, info: SnapshotFileInfo, options: ReadSnapshotOptions = {}): Promise<Uint8Array> {
  const path = join(dir, info.file);
  return readWholeFile(path, info, `the snapshot file ${path} that the raft log points at`, options);
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
