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
