import { createCipheriv, createDecipheriv, createSecretKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { ICryptoInterface } from '@chainsafe/libp2p-noise';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import { Uint8ArrayList } from 'uint8arraylist';

/**
 * The AEAD behind Noise's cipher functions: AES-256-GCM, not the ChaCha20-Poly1305 that the
 * functions' names (and the Noise protocol name in the handshake hash) say. With AES-NI it costs
 * 0.58 CPU s/GiB against ChaCha's 0.88 on 64 KiB messages (node:crypto, this machine class), and
 * every byte of a put crosses six of these calls (three hops, each sealed and opened). Both are
 * Noise ciphers with 32-byte keys, 12-byte nonces and 16-byte tags; Noise's nonce is a message
 * counter, never repeated under one key, which is all GCM asks of it. The price: a peer must run
 * this module to talk to us, which a closed cluster asks anyway (the cluster secret in the
 * prologue); peer.ts negotiates it under its own protocol id, so a peer without it is turned
 * away before the handshake.
 */
const ALGORITHM = 'aes-256-gcm';
const TAG_BYTES = 16;

/**
 * What Noise takes back from a cipher call. The list class Noise uses is another major version
 * of uint8arraylist than ours; lists of any version recognise each other by a global symbol,
 * which is how Noise's own code mixes them, so ours are handed over as they are.
 */
type Sealed = ReturnType<ICryptoInterface['chaCha20Poly1305Encrypt']>;

/** A session key as given and its KeyObject, made once instead of once per message. */
interface CachedKey {
  readonly bytes: Buffer;
  readonly key: KeyObject;
}

const keys = new WeakMap<Uint8Array, CachedKey>();

/**
 * The KeyObject for `k`. Noise keeps each session key in one Uint8Array for the session's life,
 * so it keys the cache; the bytes are compared too, so a key changed in place is never served
 * from a stale entry.
 */
function keyObject(k: Uint8Array): KeyObject {
  const cached = keys.get(k);
  if (cached !== undefined && cached.bytes.equals(k)) return cached.key;
  const bytes = Buffer.from(k); // a copy: what the cached KeyObject was made from
  const key = createSecretKey(bytes);
  keys.set(k, { bytes, key });
  return key;
}

/**
 * Noise's crypto with AES-256-GCM as its AEAD (above): the key is prepared once per session key
 * (building a KeyObject per 64 KiB message was about 9% of a node's time serving a get), and a
 * sealed message is returned as its parts (ciphertext, tag) instead of being copied into one new
 * buffer. Hashing and Diffie-Hellman are the default implementation's.
 */
export const noiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
    const cipher = createCipheriv(ALGORITHM, keyObject(k), nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(ad);
    const sealed = new Uint8ArrayList();
    if (plaintext instanceof Uint8Array) sealed.append(cipher.update(plaintext));
    else for (const part of plaintext) sealed.append(cipher.update(part));
    const final = cipher.final();
    if (final.byteLength > 0) sealed.append(final);
    sealed.append(cipher.getAuthTag());
    return sealed as unknown as Sealed;
  },
  chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k) {
    if (ciphertext.byteLength < TAG_BYTES) throw new Error('Noise message shorter than its tag');
    const decipher = createDecipheriv(ALGORITHM, keyObject(k), nonce, { authTagLength: TAG_BYTES });
    const textBytes = ciphertext.byteLength - TAG_BYTES;
    decipher.setAAD(ad);
    decipher.setAuthTag(ciphertext.subarray(textBytes));
    const text = ciphertext instanceof Uint8Array ? ciphertext.subarray(0, textBytes) : ciphertext.sublist(0, textBytes);
    const parts: Uint8Array[] = [];
    if (text instanceof Uint8Array) parts.push(decipher.update(text));
    else for (const part of text) parts.push(decipher.update(part));
    const final = decipher.final(); // throws when the tag does not match
    if (final.byteLength > 0) parts.push(final);
    if (parts.length === 1) return parts[0]!;
    // Appended one by one: a message split into tens of thousands of parts would overflow the
    // stack as spread arguments.
    const opened = new Uint8ArrayList();
    for (const part of parts) opened.append(part);
    return opened as unknown as Sealed;
  },
};
