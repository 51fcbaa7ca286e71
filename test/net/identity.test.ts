import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { describe, expect, it } from 'vitest';
import { IDENTITY_FILE_NAME, loadOrCreateIdentity } from '../../src/net/index.ts';
import { startPeer } from './peers.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();

describe('persistent identity', () => {
  it('keeps the same peer id across restarts', async () => {
    const dataDir = join(await tempDir(), 'node-1'); // created on first start
    const first = await startPeer({ dataDir });
    const id = first.peerId;
    await first.stop();
    const second = await startPeer({ dataDir });
    expect(second.peerId).toBe(id);
    expect((await startPeer({ dataDir: await tempDir() })).peerId).not.toBe(id);
  });

  it('stores an Ed25519 key in a 0600 file and leaves no temp files', async () => {
    const dataDir = await tempDir();
    const key = await loadOrCreateIdentity(dataDir);
    expect(key.type).toBe('Ed25519');
    expect((await stat(join(dataDir, IDENTITY_FILE_NAME))).mode & 0o777).toBe(0o600);
    expect(await readdir(dataDir)).toEqual([IDENTITY_FILE_NAME]);
    expect(peerIdFromPrivateKey(await loadOrCreateIdentity(dataDir)).equals(peerIdFromPrivateKey(key))).toBe(true);
  });

  it('gives concurrent first starts one identity', async () => {
    const dataDir = await tempDir();
    const keys = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateIdentity(dataDir)));
    const ids = new Set(keys.map((k) => peerIdFromPrivateKey(k).toString()));
    expect(ids.size).toBe(1);
    expect(await readdir(dataDir)).toEqual([IDENTITY_FILE_NAME]);
  });

  it('refuses a corrupt key file instead of replacing it', async () => {
    const dataDir = await tempDir();
    await writeFile(join(dataDir, IDENTITY_FILE_NAME), 'not a key');
    await expect(loadOrCreateIdentity(dataDir)).rejects.toMatchObject({ code: 'ERR_IO', message: expect.stringMatching(/not a valid private key/) });
  });

  it('reports a data dir it cannot use as ERR_IO', async () => {
    const file = join(await tempDir(), 'a-file');
    await writeFile(file, '');
    await expect(loadOrCreateIdentity(join(file, 'data'))).rejects.toMatchObject({ code: 'ERR_IO' });
  });
});
