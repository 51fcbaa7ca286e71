import { createHmac, randomBytes } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DfsError } from '../errors/index.ts';

/** Bytes in a libp2p private-network key. */
export const SWARM_KEY_BYTES = 32;

const V1_HEADER = '/key/swarm/psk/1.0.0/\n/base16/\n';

/**
 * The cluster secret in the form @libp2p/pnet reads (a "swarm key" file: header lines, then
 * 64 hex digits). Accepts 32 raw bytes or the contents of such a file (as written by
 * `formatSwarmKey` or go-ipfs' tools).
 */
export function swarmKeyFromSecret(secret: Uint8Array): Uint8Array {
  if (secret.byteLength === SWARM_KEY_BYTES) return formatSwarmKey(secret);
  const text = new TextDecoder().decode(secret);
  const lines = text.split(/\r?\n/);
  if (lines[0] === '/key/swarm/psk/1.0.0/' && lines[1] === '/base16/' && /^[0-9a-fA-F]{64}$/.test(lines[2] ?? '')) {
    return formatSwarmKey(Buffer.from(lines[2] ?? '', 'hex'));
  }
  throw new DfsError('ERR_INVALID_ARGUMENT', `a cluster secret must be ${SWARM_KEY_BYTES} bytes or a libp2p swarm key file`);
}

/** The swarm key file for 32 secret bytes. */
export function formatSwarmKey(key: Uint8Array): Uint8Array {
  if (key.byteLength !== SWARM_KEY_BYTES) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `a swarm key holds ${SWARM_KEY_BYTES} bytes, got ${key.byteLength}`);
  }
  return new TextEncoder().encode(V1_HEADER + Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex'));
}

/** The 32 secret bytes of a swarm key file (as swarmKeyFromSecret formats it). */
function secretBytes(swarmKey: Uint8Array): Buffer {
  const hex = new TextDecoder().decode(swarmKey).split(/\r?\n/)[2] ?? '';
  return Buffer.from(hex, 'hex');
}

/**
 * The Noise prologue that binds a handshake to the cluster secret: both ends mix it into the
 * handshake hash, which is the associated data of every handshake message after the first, so
 * a peer with another secret (or none) fails to decrypt the responder's identity and the
 * handshake fails. A keyed hash, so the prologue says nothing about the secret.
 */
export function noisePrologue(swarmKey: Uint8Array): Uint8Array {
  const mac = createHmac('sha256', secretBytes(swarmKeyFromSecret(swarmKey))).update('dfs/noise-prologue/v1').digest();
  return new Uint8Array(Buffer.concat([Buffer.from('dfs/cluster/v1|'), mac]));
}

/**
 * Makes a new cluster secret file at `path` (mode 0600, never over an existing file). Returns the
 * file's bytes.
 */
export async function createSwarmKeyFile(path: string): Promise<Uint8Array> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const bytes = formatSwarmKey(randomBytes(SWARM_KEY_BYTES));
  const file = await open(path, 'wx', 0o600).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EEXIST') throw new DfsError('ERR_EXISTS', `${path} already exists: a cluster secret is never overwritten`);
    throw new DfsError('ERR_IO', `cannot create ${path}: ${err.message}`, { cause: err });
  });
  try {
    await file.writeFile(bytes);
    await file.sync();
  } finally {
    await file.close();
  }
  return bytes;
}

/** Reads a cluster secret file; a clear error when it is missing or not a swarm key. */
export async function readSwarmKeyFile(path: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DfsError(code === 'ENOENT' ? 'ERR_NOT_FOUND' : 'ERR_IO', `cannot read the cluster secret ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return swarmKeyFromSecret(bytes);
  } catch {
    throw new DfsError('ERR_INVALID_ARGUMENT', `${path} is not a cluster secret (a libp2p swarm key file: /key/swarm/psk/1.0.0/, /base16/, 64 hex digits)`);
  }
}
