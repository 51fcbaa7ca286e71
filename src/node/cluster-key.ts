import { publicKeyFromProtobuf } from '@libp2p/crypto/keys';
import type { PublicKey } from '@libp2p/interface';
import { DfsError } from '../errors/index.ts';
import type { ClusterKeySource } from '../protocol/chunk-service.ts';

/** Longest `clusterKey` text read (an Ed25519 key's protobuf in base64 is 48 characters). */
export const CLUSTER_KEY_MAX_CHARS = 256;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * The cluster's public key as a storage node learns it: from its masters' heartbeat and
 * registration answers (`clusterKey`, base64 of publicKeyToProtobuf), trusted because it came from
 * a master the node dialled by peer id. The ChunkService reads it on every chunk request to check
 * tickets. The first key learnt is kept for good: a cluster's key never changes, so a different
 * one is refused (someone is impersonating a master, or a node was pointed at another cluster's
 * masters) and the caller logs it loudly.
 */
export class ClusterKey implements ClusterKeySource {
  #publicKey: PublicKey | undefined;
  #text: string | undefined;

  /** The key once learnt; undefined before. */
  get publicKey(): PublicKey | undefined {
    return this.#publicKey;
  }

  /**
   * Takes `text` (base64 of the key's protobuf) from a master's answer: 'learnt' the first time,
   * 'known' when it is the key already held. Throws ERR_PROTOCOL for text that is no Ed25519
   * public key, and ERR_FORBIDDEN for a key other than the one held (which stays).
   */
  learn(text: string): 'learnt' | 'known' {
    if (text === this.#text) return 'known';
    const key = decodeClusterKey(text);
    if (this.#publicKey !== undefined) {
      if (this.#publicKey.equals(key)) return 'known';
      throw new DfsError(
        'ERR_FORBIDDEN',
        `a master announced cluster key ${text}, but this node learnt ${this.#text} before and a cluster's key never changes: refused, the first is kept (is a master impersonated, or is this node pointed at another cluster's masters?)`,
      );
    }
    this.#publicKey = key;
    this.#text = text;
    return 'learnt';
  }
}

/** An Ed25519 public key from base64 of its protobuf; ERR_PROTOCOL for anything else. */
export function decodeClusterKey(text: string): PublicKey {
  if (text.length > CLUSTER_KEY_MAX_CHARS || !BASE64.test(text)) throw new DfsError('ERR_PROTOCOL', 'clusterKey: not base64 of a public key');
  let key: PublicKey;
  try {
    key = publicKeyFromProtobuf(Buffer.from(text, 'base64'));
  } catch (err) {
    throw new DfsError('ERR_PROTOCOL', `clusterKey: not a public key (${(err as Error).message})`);
  }
  if (key.type !== 'Ed25519') throw new DfsError('ERR_PROTOCOL', `clusterKey: the cluster key must be Ed25519, got ${key.type}`);
  return key;
}
