import { createCipheriv, randomBytes } from 'node:crypto';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import { describe, expect, it } from 'vitest';
import { Uint8ArrayList } from 'uint8arraylist';
import { noiseCrypto } from '../../src/net/noise-crypto.ts';

/** Our uint8arraylist is another major version than Noise's: same shape, other type. */
const list = (...parts: Uint8Array[]) => new Uint8ArrayList(...parts) as unknown as Parameters<typeof noiseCrypto.chaCha20Poly1305Encrypt>[0];
const flat = (x: Uint8Array | { subarray(): Uint8Array }): Buffer => Buffer.from(x instanceof Uint8Array ? x : x.subarray());

/** AES-256-GCM done the plain way, one call per message: what noiseCrypto must agree with. */
function referenceSeal(plaintext: Uint8Array, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): Buffer {
  const cipher = createCipheriv('aes-256-gcm', k, nonce, { authTagLength: 16 });
  cipher.setAAD(ad);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

describe('noiseCrypto (AES-256-GCM behind Noise, per-session keys)', () => {
  const ad = randomBytes(32);

  it('seals and opens exactly as plain AES-256-GCM, for handshake-sized and transport messages, whole or in parts', () => {
    for (const size of [0, 100, 16 * 1024 - 1, 16 * 1024, 65_519]) {
      const k = randomBytes(32);
      const nonce = randomBytes(12);
      const plaintext = randomBytes(size);
      const ours = flat(noiseCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k));
      const theirs = referenceSeal(plaintext, nonce, ad, k);
      expect(ours.equals(theirs), `size ${size}`).toBe(true);
      const parts = list(plaintext.subarray(0, size >> 1), plaintext.subarray(size >> 1));
      expect(flat(noiseCrypto.chaCha20Poly1305Encrypt(parts, nonce, ad, k)).equals(theirs)).toBe(true);
      expect(flat(noiseCrypto.chaCha20Poly1305Decrypt(theirs, nonce, ad, k)).equals(plaintext)).toBe(true);
      const split = list(theirs.subarray(0, 7), theirs.subarray(7));
      expect(flat(noiseCrypto.chaCha20Poly1305Decrypt(split, nonce, ad, k)).equals(plaintext)).toBe(true);
    }
  });

  it('refuses a tampered message, a wrong nonce, the wrong key, the wrong associated data or a stub', () => {
    const k = randomBytes(32);
    const nonce = randomBytes(12);
    const sealed = flat(noiseCrypto.chaCha20Poly1305Encrypt(randomBytes(64 * 1024 - 17), nonce, ad, k));
    const tampered = Buffer.from(sealed);
    tampered[1000]! ^= 1;
    expect(() => noiseCrypto.chaCha20Poly1305Decrypt(tampered, nonce, ad, k)).toThrow();
    expect(() => noiseCrypto.chaCha20Poly1305Decrypt(sealed, randomBytes(12), ad, k)).toThrow();
    expect(() => noiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, ad, randomBytes(32))).toThrow();
    expect(() => noiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, randomBytes(32), k)).toThrow();
    expect(() => noiseCrypto.chaCha20Poly1305Decrypt(sealed.subarray(0, 15), nonce, ad, k)).toThrow();
  });

  it('does not open what the stock ChaCha20-Poly1305 sealed: a peer without this module cannot talk to us', () => {
    const k = randomBytes(32);
    const nonce = randomBytes(12);
    const stock = flat(defaultCrypto.chaCha20Poly1305Encrypt(randomBytes(1000), nonce, ad, k));
    expect(() => noiseCrypto.chaCha20Poly1305Decrypt(stock, nonce, ad, k)).toThrow();
  });

  it('uses the key as it is now when its bytes change in place (no stale cached key)', () => {
    const k = randomBytes(32);
    const nonce = randomBytes(12);
    const plaintext = randomBytes(32 * 1024);
    noiseCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k); // caches k
    k[0]! ^= 0xff;
    const sealed = flat(noiseCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k));
    expect(sealed.equals(referenceSeal(plaintext, nonce, ad, k))).toBe(true);
  });
});
