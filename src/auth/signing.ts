import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { PrivateKey, PublicKey } from '@libp2p/interface';
import { DfsError } from '../errors/index.ts';

/**
 * Compact signed envelopes shared by login tokens and chunk tickets:
 *
 *     base64url(JSON claims) + '.' + base64url(64-byte Ed25519 signature)
 *
 * The signature covers the UTF-8 bytes of `<context>.<base64url claims>`, where the context
 * (`dfs/token/v1`, `dfs/ticket/v1`) separates the kinds: the cluster key signs both, and a ticket
 * must never pass as a token or the other way round. The claims are signed as the exact text that
 * travels, so no JSON canonicalisation is needed.
 *
 * Signing goes through the libp2p key (`privateKey.sign`, as receipts do). Verifying is
 * synchronous on node:crypto with a KeyObject prepared once per public key (libp2p's verify builds
 * one from JWK on every call, which costs more than the signature check itself).
 */
export const SIGNATURE_BYTES = 64;
const SIGNATURE_B64_LENGTH = 86; // ceil(64 * 4 / 3), no padding
const BASE64URL = /^[A-Za-z0-9_-]*$/;
const encoder = new TextEncoder();

export function toBase64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/** Strict base64url (no padding, canonical trailing bits); undefined when `text` is not one. */
export function fromBase64url(text: string): Buffer | undefined {
  if (!BASE64URL.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : undefined;
}

function signedBytes(context: string, payload: string): Uint8Array {
  return encoder.encode(`${context}.${payload}`);
}

/** Signs `claims` (a JSON value) under `context` with an Ed25519 private key. */
export async function signEnvelope(privateKey: PrivateKey, context: string, claims: unknown): Promise<string> {
  if (privateKey.type !== 'Ed25519') throw new DfsError('ERR_INVALID_ARGUMENT', `the cluster key must be Ed25519, got ${privateKey.type}`);
  const payload = Buffer.from(JSON.stringify(claims), 'utf8').toString('base64url');
  const sig = await privateKey.sign(signedBytes(context, payload));
  return `${payload}.${toBase64url(sig)}`;
}

const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const keyObjects = new WeakMap<PublicKey, KeyObject | null>();

function keyObjectOf(publicKey: PublicKey): KeyObject | undefined {
  let key = keyObjects.get(publicKey);
  if (key === undefined) {
    key = null;
    if (publicKey.type === 'Ed25519' && publicKey.raw.byteLength === 32) {
      try {
        key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey.raw]), format: 'der', type: 'spki' });
      } catch {
        key = null;
      }
    }
    keyObjects.set(publicKey, key);
  }
  return key ?? undefined;
}

export type OpenResult = { readonly ok: true; readonly claims: unknown } | { readonly ok: false; readonly why: 'malformed' | 'signature' };

/**
 * Checks an envelope's signature and returns its claims as parsed JSON, still to be validated with
 * a schema. Never throws. `maxLength` bounds the work a hostile envelope can cause.
 */
export function openEnvelope(envelope: unknown, publicKey: PublicKey, context: string, maxLength: number): OpenResult {
  if (typeof envelope !== 'string' || envelope.length > maxLength) return { ok: false, why: 'malformed' };
  const dot = envelope.indexOf('.');
  if (dot <= 0 || envelope.length - dot - 1 !== SIGNATURE_B64_LENGTH) return { ok: false, why: 'malformed' };
  const payload = envelope.slice(0, dot);
  const sig = fromBase64url(envelope.slice(dot + 1));
  const body = fromBase64url(payload);
  if (sig === undefined || sig.byteLength !== SIGNATURE_BYTES || body === undefined) return { ok: false, why: 'malformed' };
  const key = keyObjectOf(publicKey);
  if (key === undefined) return { ok: false, why: 'signature' };
  let good: boolean;
  try {
    good = cryptoVerify(null, signedBytes(context, payload), key, sig);
  } catch {
    good = false;
  }
  if (!good) return { ok: false, why: 'signature' };
  try {
    return { ok: true, claims: JSON.parse(body.toString('utf8')) };
  } catch {
    // Only the cluster key could have signed this, so it is a bug on the signer's side; still refused.
    return { ok: false, why: 'malformed' };
  }
}
