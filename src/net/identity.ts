import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { DfsError, fromSystemError } from '../errors/index.ts';

/** The file in a data dir that holds this process's libp2p identity (protobuf-encoded key). */
export const IDENTITY_FILE_NAME = 'peer-key';

/**
 * Loads the Ed25519 private key stored in `dataDir`, or creates and stores one, so that a process
 * keeps its PeerId across restarts. A corrupt key file is an error, never silently replaced:
 * replacing it would give the process a new identity that the rest of the cluster does not know.
 */
export async function loadOrCreateIdentity(dataDir: string): Promise<PrivateKey> {
  const path = join(dataDir, IDENTITY_FILE_NAME);
  const existing = await readIdentity(path);
  if (existing) return existing;

  const key = await generateKeyPair('Ed25519');
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const won = await publishNoClobber(dataDir, path, privateKeyToProtobuf(key));
    if (won) return key;
  } catch (err) {
    throw fromSystemError(err, `cannot store the peer identity in ${path}`);
  }
  // Another process created the identity between our read and our link: theirs wins.
  const winner = await readIdentity(path);
  if (!winner) throw new DfsError('ERR_IO', `peer identity ${path} vanished while being created`);
  return winner;
}

async function readIdentity(path: string): Promise<PrivateKey | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(err, `cannot read the peer identity ${path}`);
  }
  let key: PrivateKey;
  try {
    key = privateKeyFromProtobuf(bytes);
  } catch (err) {
    throw new DfsError('ERR_IO', `peer identity ${path} is not a valid private key; move it away to create a new identity`, { cause: err });
  }
  if (key.type !== 'Ed25519') {
    throw new DfsError('ERR_IO', `peer identity ${path} holds a ${key.type} key; dfs expects Ed25519`);
  }
  return key;
}

/**
 * Writes `bytes` to a temp file (mode 0600), fsyncs it, then gives it its final name, then fsyncs
 * the directory. Returns false if the final name already existed (another process won).
 * The final name is created with link(), not rename(): rename would silently replace a key that a
 * concurrently starting process already uses, leaving the two with different identities.
 */
async function publishNoClobber(dir: string, path: string, bytes: Uint8Array): Promise<boolean> {
  const tmp = join(dir, `.${IDENTITY_FILE_NAME}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const file = await open(tmp, 'wx', 0o600);
  try {
    await file.writeFile(bytes);
    await file.sync();
  } finally {
    await file.close();
  }
  let won = true;
  try {
    await link(tmp, path);
    await unlink(tmp);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      won = false;
      await unlink(tmp);
    } else if (code === 'EPERM' || code === 'ENOTSUP' || code === 'ENOSYS' || code === 'EXDEV') {
      // Filesystems without hard links: fall back to rename (last writer wins).
      await rename(tmp, path);
    } else {
      await unlink(tmp).catch(() => {});
      throw err;
    }
  }
  await syncDir(dir);
  return won;
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
