import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { describe, expect, it } from 'vitest';
import { DfsError } from '../../src/errors/index.ts';
import {
  DEFAULT_TOKEN_TTL_MS,
  isAuthError,
  newTicketClaims,
  newTokenClaims,
  signTicket,
  signToken,
  tokenError,
  verifyToken,
} from '../../src/auth/index.ts';
import type { TokenResult, VerifyTokenOptions } from '../../src/auth/index.ts';

const clusterKey = await generateKeyPair('Ed25519');
const otherKey = await generateKeyPair('Ed25519');
const peerKey = await generateKeyPair('Ed25519');
const PEER = peerIdFromPrivateKey(peerKey).toString();
const OTHER_PEER = peerIdFromPrivateKey(otherKey).toString();
const T0 = Date.UTC(2025, 0, 1);

/** The state the verifier reads: alice (gen 3), bob (disabled). */
const gens = new Map([
  ['alice', 3],
  ['bob', 0],
]);
const disabled = new Set(['bob']);
const state = (now = T0 + 1000, peerId?: string): VerifyTokenOptions => ({
  now,
  currentGen: (u) => gens.get(u),
  disabled: (u) => disabled.has(u),
  ...(peerId === undefined ? {} : { peerId }),
});

const aliceClaims = newTokenClaims({ user: 'alice', roles: ['writer', 'reader'], gen: 3, now: T0 });
const aliceToken = await signToken(clusterKey, aliceClaims);

function refusal(result: TokenResult): Extract<TokenResult, { ok: false }> {
  if (result.ok) throw new Error(`accepted: ${JSON.stringify(result.identity)}`);
  return result;
}

function b64json(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

describe('login tokens: refusals first', () => {
  it('no token', () => {
    for (const t of [undefined, null, '']) {
      const r = refusal(verifyToken(t, clusterKey.publicKey, state()));
      expect(r).toMatchObject({ code: 'ERR_UNAUTHENTICATED', reason: 'missing' });
      expect(r.message).toContain('dfs login');
    }
  });

  it('malformed tokens', () => {
    const [payload, sig] = aliceToken.split('.') as [string, string];
    for (const t of [42, {}, 'x', '.', `${payload}`, `${payload}.`, `.${sig}`, `${payload}.${sig}.x`, `${payload}!.${sig}`, `${payload}.${sig.slice(1)}`, `${payload}==.${sig}`, `${'A'.repeat(3000)}.${sig}`]) {
      const r = refusal(verifyToken(t, clusterKey.publicKey, state()));
      expect(r.code).toBe('ERR_UNAUTHENTICATED');
      expect(['malformed', 'signature']).toContain(r.reason);
      expect(r.message).toContain('dfs login');
    }
  });

  it('signed by another key (another cluster)', async () => {
    const foreign = await signToken(otherKey, aliceClaims);
    const r = refusal(verifyToken(foreign, clusterKey.publicKey, state()));
    expect(r).toMatchObject({ code: 'ERR_UNAUTHENTICATED', reason: 'signature' });
    expect(r.message).toMatch(/not signed by this cluster's key.*dfs login/);
  });

  it('tampered: claims changed (roles, user, gen, exp) under the original signature', () => {
    const sig = aliceToken.split('.')[1] ?? '';
    for (const change of [{ roles: ['admin'] }, { user: 'root' }, { gen: 99 }, { exp: aliceClaims.exp + 1 }]) {
      const forged = `${b64json({ ...aliceClaims, ...change })}.${sig}`;
      expect(refusal(verifyToken(forged, clusterKey.publicKey, state()))).toMatchObject({ code: 'ERR_UNAUTHENTICATED', reason: 'signature' });
    }
  });

  it('tampered: one character of the signature changed', () => {
    const [payload, sig] = aliceToken.split('.') as [string, string];
    for (const i of [0, 40, 84]) {
      const c = sig[i] === 'A' ? 'B' : 'A';
      const forged = `${payload}.${sig.slice(0, i)}${c}${sig.slice(i + 1)}`;
      expect(refusal(verifyToken(forged, clusterKey.publicKey, state())).reason).toBe('signature');
    }
  });

  it('a chunk ticket is not a login token, even with the same key', async () => {
    const ticket = await signTicket(clusterKey, newTicketClaims({ op: 'get', ids: ['a'.repeat(64)], bearer: PEER, now: T0 }));
    expect(refusal(verifyToken(ticket, clusterKey.publicKey, state())).reason).toBe('signature');
  });

  it('expired: ERR_TOKEN_EXPIRED from exp on', () => {
    for (const now of [aliceClaims.exp, aliceClaims.exp + 1, aliceClaims.exp + 86_400_000]) {
      const r = refusal(verifyToken(aliceToken, clusterKey.publicKey, state(now)));
      expect(r).toMatchObject({ code: 'ERR_TOKEN_EXPIRED', reason: 'expired' });
      expect(r.message).toContain('run `dfs login` again');
    }
    expect(verifyToken(aliceToken, clusterKey.publicKey, state(aliceClaims.exp - 1)).ok).toBe(true);
  });

  it('issued in the future beyond the clock skew', () => {
    expect(refusal(verifyToken(aliceToken, clusterKey.publicKey, state(T0 - 61_000))).reason).toBe('not-yet-valid');
    expect(verifyToken(aliceToken, clusterKey.publicKey, state(T0 - 59_000)).ok).toBe(true);
  });

  it('unknown user', async () => {
    const t = await signToken(clusterKey, newTokenClaims({ user: 'carol', roles: [], gen: 0, now: T0 }));
    const r = refusal(verifyToken(t, clusterKey.publicKey, state()));
    expect(r).toMatchObject({ code: 'ERR_UNAUTHENTICATED', reason: 'unknown-user' });
    expect(r.message).toContain('carol');
  });

  it('disabled user', async () => {
    const t = await signToken(clusterKey, newTokenClaims({ user: 'bob', roles: ['reader'], gen: 0, now: T0 }));
    const r = refusal(verifyToken(t, clusterKey.publicKey, state()));
    expect(r).toMatchObject({ code: 'ERR_UNAUTHENTICATED', reason: 'disabled' });
    expect(r.message).toMatch(/bob is disabled: ask an admin/);
    disabled.delete('bob');
    try {
      expect(verifyToken(t, clusterKey.publicKey, state()).ok).toBe(true);
    } finally {
      disabled.add('bob');
    }
  });

  it('revoked: a token of an older generation; the bump applies to the next check', () => {
    expect(verifyToken(aliceToken, clusterKey.publicKey, state()).ok).toBe(true);
    gens.set('alice', 4);
    try {
      const r = refusal(verifyToken(aliceToken, clusterKey.publicKey, state()));
      expect(r).toMatchObject({ code: 'ERR_UNAUTHENTICATED', reason: 'revoked' });
      expect(r.message).toContain('run `dfs login` again');
    } finally {
      gens.set('alice', 3);
    }
  });

  it('a peer-bound token from another peer, or with no peer given', async () => {
    const bound = await signToken(clusterKey, newTokenClaims({ user: 'alice', roles: ['reader'], gen: 3, now: T0, peer: PEER }));
    expect(refusal(verifyToken(bound, clusterKey.publicKey, state(T0 + 1, OTHER_PEER))).reason).toBe('wrong-peer');
    expect(refusal(verifyToken(bound, clusterKey.publicKey, state(T0 + 1))).reason).toBe('wrong-peer');
    const ok = verifyToken(bound, clusterKey.publicKey, state(T0 + 1, PEER));
    expect(ok.ok && ok.identity).toEqual({ user: 'alice', roles: ['reader'], gen: 3, peer: PEER });
  });

  it('signToken refuses claims a verifier could not read', async () => {
    const bad = [
      { ...aliceClaims, user: '-rf' },
      { ...aliceClaims, user: '@admin' },
      { ...aliceClaims, roles: ['boss'] },
      { ...aliceClaims, gen: -1 },
      { ...aliceClaims, exp: aliceClaims.iat },
      { ...aliceClaims, exp: aliceClaims.iat + 31 * 86_400_000 },
      { ...aliceClaims, peer: 'not a peer id' },
    ];
    for (const claims of bad) {
      // @ts-expect-error: deliberately wrong claims
      await expect(signToken(clusterKey, claims)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    }
  });

  it('refusals become DfsErrors with the refusal code and message', () => {
    const r = refusal(verifyToken(undefined, clusterKey.publicKey, state()));
    const err = tokenError(r);
    expect(isAuthError(err, 'ERR_UNAUTHENTICATED')).toBe(true);
    expect(err).toBeInstanceOf(DfsError);
    expect(err.code).toBe('ERR_UNAUTHENTICATED');
    expect(err.message).toBe(r.message);
  });
});

describe('login tokens', () => {
  it('a good token gives the identity (roles canonical) and the claims', () => {
    const r = verifyToken(aliceToken, clusterKey.publicKey, state());
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.identity).toEqual({ user: 'alice', roles: ['writer', 'reader'], gen: 3 });
    expect(r.claims).toEqual(aliceClaims);
    expect(aliceClaims.exp - aliceClaims.iat).toBe(DEFAULT_TOKEN_TTL_MS);
  });

  it('compact: base64url claims and signature, a few hundred characters', () => {
    expect(aliceToken).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{86}$/);
    expect(aliceToken.length).toBeLessThan(300);
    expect(JSON.parse(Buffer.from(aliceToken.split('.')[0] ?? '', 'base64url').toString())).toEqual(aliceClaims);
  });

  it('a token of a newer generation than a lagging state is accepted', async () => {
    const t = await signToken(clusterKey, newTokenClaims({ user: 'alice', roles: [], gen: 5, now: T0 }));
    expect(verifyToken(t, clusterKey.publicKey, state()).ok).toBe(true);
  });

  it('duplicate roles are folded', async () => {
    const t = await signToken(clusterKey, { ...aliceClaims, roles: ['reader', 'admin', 'reader'] });
    const r = verifyToken(t, clusterKey.publicKey, state());
    expect(r.ok && r.identity.roles).toEqual(['admin', 'reader']);
  });
});
