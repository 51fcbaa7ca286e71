import { createHash } from 'node:crypto';
import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DfsError, isDfsError } from '../../src/errors/index.ts';
import { readSnapshotFile, type SnapshotFileInfo } from '../../src/master/snapshot-file.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
const GiB = 1024 * 1024 * 1024;

function bytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (Math.imul(i + seed, 2654435761) >>> 24) & 0xff;
  return out;
}

const sha = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

/** A snapshot file holding `data`, and the info the raft log would keep for it. */
async function fileOf(data: Uint8Array): Promise<{ dir: string; info: SnapshotFileInfo; path: string }> {
  const dir = await tempDir();
  const info = { file: 'snap', bytes: data.length, sha256: sha(data) };
  const path = join(dir, info.file);
  await writeFile(path, data);
  return { dir, info, path };
}

async function failure(p: Promise<unknown>): Promise<DfsError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isDfsError(err, 'ERR_IO'), `expected ERR_IO, got ${String(err)}`).toBe(true);
  return err as DfsError;
}

describe('readSnapshotFile: piecewise into one buffer, never readFile (which stops at 2 GiB)', () => {
  it('reads the whole file through small pieces, for sizes on and off piece boundaries and empty', async () => {
    for (const [length, pieceBytes] of [
      [10_007, 1000],
      [8000, 1000],
      [999, 1000],
      [1, 1],
      [0, 16],
    ] as const) {
      const data = bytes(length, length);
      const { dir, info } = await fileOf(data);
      const got = await readSnapshotFile(dir, info, { pieceBytes });
      expect(got).toBeInstanceOf(Uint8Array);
      expect(got.length).toBe(length);
      expect(Buffer.compare(Buffer.from(got), Buffer.from(data))).toBe(0);
    }
  });

  it('a digest mismatch anywhere (first, middle or last piece) is ERR_IO naming both digests', async () => {
    const data = bytes(10_000, 7);
    for (const at of [0, 4321, 9999]) {
      const { dir, info, path } = await fileOf(data);
      const bad = Buffer.from(data);
      bad[at]! ^= 1;
      await writeFile(path, bad);
      const err = await failure(readSnapshotFile(dir, info, { pieceBytes: 1000 }));
      expect(err.message).toMatch(/is corrupt/);
      expect(err.message).toContain(info.sha256);
      expect(err.message).toContain(sha(bad));
    }
  });

  it('a truncated or lengthened file is ERR_IO naming both lengths', async () => {
    const data = bytes(10_000, 3);
    const { dir, info, path } = await fileOf(data);
    await writeFile(path, data.subarray(0, 9_999));
    expect((await failure(readSnapshotFile(dir, info, { pieceBytes: 1000 }))).message).toMatch(/has 9999 bytes, expected 10000/);
    await writeFile(path, Buffer.concat([data, Uint8Array.of(0)]));
    expect((await failure(readSnapshotFile(dir, info, { pieceBytes: 1000 }))).message).toMatch(/has 10001 bytes, expected 10000/);
    await writeFile(path, new Uint8Array(0));
    expect((await failure(readSnapshotFile(dir, info, { pieceBytes: 1000 }))).message).toMatch(/has 0 bytes, expected 10000/);
  });

  it('a file truncated while it is being read is ERR_IO, not a short buffer', async () => {
    const data = bytes(1024 * 1024, 5);
    const { dir, info, path } = await fileOf(data);
    // 16-byte pieces: 65,536 reads, far longer than the wait before the truncation.
    const reading = readSnapshotFile(dir, info, { pieceBytes: 16 });
    await new Promise((resolve) => setTimeout(resolve, 30));
    await truncate(path, 512 * 1024);
    // Normally the read is under way (it hits the end early); on a very slow machine the stat may see the truncation.
    expect((await failure(reading)).message).toMatch(/ended after 524288 of 1048576 bytes|has 524288 bytes, expected 1048576/);
  });

  it('a missing file is ERR_IO', async () => {
    const dir = await tempDir();
    const err = await failure(readSnapshotFile(dir, { file: 'gone', bytes: 1, sha256: sha(Uint8Array.of(0)) }));
    expect(err.message).toMatch(/cannot read the snapshot file .*gone/);
  });

  it('a size over the limit is ERR_IO naming the size and the limit, before anything is allocated', async () => {
    const data = bytes(2000, 1);
    const { dir, info, path } = await fileOf(data);
    // The raft log says it is too large: refused without opening the file.
    let err = await failure(readSnapshotFile(dir, { ...info, file: 'does-not-exist' }, { maxBytes: 1000 }));
    expect(err.message).toMatch(/is 2000 bytes, over the 1000-byte limit/);
    // The file on disk is too large, whatever the raft log says.
    err = await failure(readSnapshotFile(dir, { ...info, bytes: 500 }, { maxBytes: 1000 }));
    expect(err.message).toMatch(/is 2000 bytes, over the 1000-byte limit/);
  });

  it('a sparse file over 2 GiB (beyond readFile) over a 2 GiB limit fails fast with the clear error', async () => {
    const dir = await tempDir();
    const size = Math.floor(2.1 * GiB);
    const path = join(dir, 'big');
    await writeFile(path, new Uint8Array(0));
    await truncate(path, size); // sparse: no data blocks, instant on common filesystems
    const started = performance.now();
    const err = await failure(readSnapshotFile(dir, { file: 'big', bytes: size, sha256: 'x' }, { maxBytes: 2 * GiB }));
    expect(err.message).toContain(`is ${size} bytes, over the ${2 * GiB}-byte limit`);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  // Reads 2.1 GiB for real (2.1 GiB of memory, seconds of hashing): DFS_BIG_SNAPSHOT=1 to run it.
  it.runIf(process.env.DFS_BIG_SNAPSHOT === '1')('BIG: reads back a 2.1 GiB snapshot file (readFile would throw ERR_FS_FILE_TOO_LARGE)', { timeout: 300_000 }, async () => {
    const dir = await tempDir();
    const size = Math.floor(2.1 * GiB);
    const path = join(dir, 'big');
    await writeFile(path, new Uint8Array(0));
    await truncate(path, size);
    const hash = createHash('sha256');
    const zeros = new Uint8Array(64 * 1024 * 1024);
    for (let left = size; left > 0; left -= zeros.length) hash.update(left >= zeros.length ? zeros : zeros.subarray(0, left));
    const started = performance.now();
    const data = await readSnapshotFile(dir, { file: 'big', bytes: size, sha256: hash.digest('hex') });
    console.log(`[snapshot-file] read and hashed ${size} bytes in ${(performance.now() - started).toFixed(0)} ms`);
    expect(data.length).toBe(size);
    expect(data[size - 1]).toBe(0);
  });
});
