import { createHash, generateKeyPairSync, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { describe, expect, it } from 'vitest';
import { isChunkId } from '../../src/chunker/chunk-id.ts';
import {
  isAuthError,
  MAX_TICKET_IDS,
  newTicketClaims,
  newTokenClaims,
  signTicket,
  signToken,
  ticketError,
  TicketVerifier,
  verifyTicket,
} from '../../src/auth/index.ts';
import type { TicketResult, VerifyTicketOptions } from '../../src/auth/index.ts';

const clusterKey = await generateKeyPair('Ed25519');
const otherKey = await generateKeyPair('Ed25519');
const client = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString();
const stranger = peerIdFromPrivateKey(otherKey).toString();
const T0 = Date.UTC(2025, 0, 1);

const id = (n: number): string => createHash('sha256').update(`chunk ${n}`).digest('hex');
const A = id(1);
const B = id(2);
const C = id(3);

const putTicket = await signTicket(clusterKey, newTicketClaims({ op: 'put', ids: [B, A, A], bearer: client, now: T0, fence: 7 }));
const request = (over: Partial<VerifyTicketOptions> = {}): VerifyTicketOptions => ({
  publicKey: clusterKey.publicKey,
  now: T0 + 1000,
  op: 'put',
  chunkId: A,
  bearerPeerId: client,
  fence: 7,
  ...over,
});

function fail(): never {
  throw new Error('refused');
}

function refusal(result: TicketResult): Extract<TicketResult, { ok: false }> {
  if (result.ok) throw new Error(`accepted: ${JSON.stringify(result.claims)}`);
  return result;
}

describe('chunk tickets: refusals first', () => {
  it('no ticket', () => {
    for (const t of [undefined, null, '']) {
      const r = refusal(verifyTicket(t, request()));
      expect(r).toMatchObject({ code: 'ERR_FORBIDDEN', reason: 'missing' });
      expect(r.message).toContain(`no chunk ticket with the put of chunk ${A}`);
    }
  });

  it('malformed', () => {
    for (const t of [1, {}, 'x', 'a.b', `${putTicket}x`, `${'A'.repeat(40_000)}.${putTicket.split('.')[1]}`]) {
      expect(['malformed', 'signature']).toContain(refusal(verifyTicket(t, request())).reason);
    }
  });

  it('expired: from exp on, ERR_TOKEN_EXPIRED (ask for a new one)', () => {
    const exp = T0 + 60_000;
    expect(verifyTicket(putTicket, request({ now: exp - 1 })).ok).toBe(true);
    const r = refusal(verifyTicket(putTicket, request({ now: exp })));
    expect(r).toMatchObject({ code: 'ERR_TOKEN_EXPIRED', reason: 'expired' });
    expect(r.message).toContain('ask the masters for a new one');
  });

  it('another chunk', () => {
    const r = refusal(verifyTicket(putTicket, request({ chunkId: C })));
    expect(r).toMatchObject({ code: 'ERR_FORBIDDEN', reason: 'wrong-chunk' });
    expect(r.message).toBe(`the chunk ticket does not cover chunk ${C}`);
  });

  it('another op', () => {
    for (const op of ['get', 'replicate', 'delete'] as const) {
      expect(refusal(verifyTicket(putTicket, request({ op })))).toMatchObject({ code: 'ERR_FORBIDDEN', reason: 'wrong-op', message: `the chunk ticket is for put, not ${op}` });
    }
  });

  it('another bearer', () => {
    const r = refusal(verifyTicket(putTicket, request({ bearerPeerId: stranger })));
    expect(r).toMatchObject({ code: 'ERR_FORBIDDEN', reason: 'wrong-bearer' });
    expect(r.message).toContain(`issued to peer ${client}, not to ${stranger}`);
  });

  it('another fence, or none', () => {
    expect(refusal(verifyTicket(putTicket, request({ fence: 8 }))).reason).toBe('wrong-fence');
    const { fence: _, ...noFence } = request();
    expect(refusal(verifyTicket(putTicket, noFence)).message).toBe('the chunk ticket is for fence 7, the request has none');
  });

  it('bad signature: another key, altered claims, altered signature', async () => {
    const foreign = await signTicket(otherKey, newTicketClaims({ op: 'put', ids: [A], bearer: client, now: T0, fence: 7 }));
    expect(refusal(verifyTicket(foreign, request())).reason).toBe('signature');
    const [payload, sig] = putTicket.split('.') as [string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    for (const change of [{ ids: [A, B, C] }, { op: 'get' }, { bearer: stranger }, { exp: T0 + 3_600_000 }, { fence: 8 }]) {
      const forged = `${Buffer.from(JSON.stringify({ ...claims, ...change })).toString('base64url')}.${sig}`;
      expect(refusal(verifyTicket(forged, request())).reason).toBe('signature');
    }
    const flipped = `${payload}.${sig.slice(0, 10)}${sig[10] === 'A' ? 'B' : 'A'}${sig.slice(11)}`;
    expect(refusal(verifyTicket(flipped, request())).reason).toBe('signature');
  });

  it('a login token is not a ticket, even with the same key', async () => {
    const token = await signToken(clusterKey, newTokenClaims({ user: 'alice', roles: ['admin'], gen: 0, now: T0 }));
    expect(refusal(verifyTicket(token, request())).reason).toBe('signature');
  });

  it('signTicket refuses what a node could not read', async () => {
    const many = Array.from({ length: MAX_TICKET_IDS + 1 }, (_, i) => id(i));
    await expect(signTicket(clusterKey, newTicketClaims({ op: 'get', ids: many, bearer: client, now: T0 }))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(signTicket(clusterKey, newTicketClaims({ op: 'get', ids: [], bearer: client, now: T0 }))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(signTicket(clusterKey, newTicketClaims({ op: 'get', ids: ['A'.repeat(64)], bearer: client, now: T0 }))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    expect(() => newTicketClaims({ op: 'get', ids: [A], bearer: client, now: T0, ttlMs: 3_600_000 })).toThrow(/ttlMs/);
  });

  it('refusals become errors (ERR_FORBIDDEN exists; ERR_TOKEN_EXPIRED is to be added)', () => {
    expect(isAuthError(ticketError(refusal(verifyTicket(undefined, request()))), 'ERR_FORBIDDEN')).toBe(true);
    expect(isAuthError(ticketError(refusal(verifyTicket(putTicket, request({ now: T0 + 60_000 })))), 'ERR_TOKEN_EXPIRED')).toBe(true);
  });
});

describe('chunk tickets: a set of operations, a vouched bearer (a storage node forwarding a put)', () => {
  it('an op list accepts a ticket for any of them and refuses others; bearerVouched skips only the bearer', async () => {
    const replicate = await signTicket(clusterKey, newTicketClaims({ op: 'replicate', ids: [A], bearer: client, now: T0, fence: 7 }));
    expect(verifyTicket(replicate, request({ op: ['put', 'replicate'] })).ok).toBe(true);
    expect(verifyTicket(putTicket, request({ op: ['put', 'replicate'] })).ok).toBe(true);
    const wrongOp = refusal(verifyTicket(putTicket, request({ op: ['get', 'delete'] })));
    expect(wrongOp).toMatchObject({ reason: 'wrong-op', message: 'the chunk ticket is for put, not get or delete' });
    expect(refusal(verifyTicket(putTicket, request({ bearerPeerId: stranger }))).reason).toBe('wrong-bearer');
    expect(verifyTicket(putTicket, request({ bearerPeerId: stranger, bearerVouched: true })).ok).toBe(true);
    // Everything else still counts for a vouched bearer.
    expect(refusal(verifyTicket(putTicket, request({ bearerPeerId: stranger, bearerVouched: true, chunkId: C }))).reason).toBe('wrong-chunk');
    expect(refusal(verifyTicket(putTicket, request({ bearerPeerId: stranger, bearerVouched: true, fence: 8 }))).reason).toBe('wrong-fence');
    expect(refusal(verifyTicket(putTicket, request({ bearerPeerId: stranger, bearerVouched: true, now: T0 + 60_000 }))).reason).toBe('expired');
    expect(refusal(verifyTicket(putTicket, request({ bearerPeerId: stranger, bearerVouched: true, op: 'get' }))).reason).toBe('wrong-op');
  });
});

describe('chunk tickets', () => {
  it('a good ticket covers each of its ids (sorted, de-duplicated), for its op, bearer and fence', () => {
    for (const chunkId of [A, B]) {
      const r = verifyTicket(putTicket, request({ chunkId }));
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.claims).toEqual({ op: 'put', ids: [A, B].sort(), bearer: client, exp: T0 + 60_000, fence: 7 });
    }
    expect(isChunkId(A)).toBe(true);
  });

  it('a ticket without a fence is good with any fence or none', async () => {
    const get = await signTicket(clusterKey, newTicketClaims({ op: 'get', ids: [C], bearer: client, now: T0 }));
    expect(verifyTicket(get, request({ op: 'get', chunkId: C, fence: 99 })).ok).toBe(true);
    const { fence: _, ...noFence } = request({ op: 'get', chunkId: C });
    expect(verifyTicket(get, noFence).ok).toBe(true);
  });

  it('MAX_TICKET_IDS ids fit, and every one of them is found', async () => {
    const ids = Array.from({ length: MAX_TICKET_IDS }, (_, i) => id(i + 100));
    const t = await signTicket(clusterKey, newTicketClaims({ op: 'get', ids, bearer: client, now: T0 }));
    for (const chunkId of ids) expect(verifyTicket(t, request({ op: 'get', chunkId, fence: undefined })).ok).toBe(true);
    expect(refusal(verifyTicket(t, request({ op: 'get', chunkId: A }))).reason).toBe('wrong-chunk');
  });

  it('TicketVerifier: a cached ticket still gets every request check; refused tickets are not cached; the cache is bounded', async () => {
    const v = new TicketVerifier({ publicKey: clusterKey.publicKey, cacheSize: 2 });
    const { publicKey: _, ...req } = request();
    expect(v.verify(putTicket, req).ok).toBe(true);
    expect(v.size).toBe(1);
    expect(v.verify(putTicket, { ...req, chunkId: B }).ok).toBe(true);
    expect(refusal(v.verify(putTicket, { ...req, chunkId: C })).reason).toBe('wrong-chunk');
    expect(refusal(v.verify(putTicket, { ...req, op: 'get' })).reason).toBe('wrong-op');
    expect(refusal(v.verify(putTicket, { ...req, bearerPeerId: stranger })).reason).toBe('wrong-bearer');
    expect(refusal(v.verify(putTicket, { ...req, fence: 6 })).reason).toBe('wrong-fence');
    expect(refusal(v.verify(undefined, req)).reason).toBe('missing');
    const foreign = await signTicket(otherKey, newTicketClaims({ op: 'put', ids: [A], bearer: client, now: T0, fence: 7 }));
    expect(refusal(v.verify(foreign, req)).reason).toBe('signature');
    expect(v.size).toBe(1);
    const more = await Promise.all([4, 5, 6].map((n) => signTicket(clusterKey, newTicketClaims({ op: 'get', ids: [id(n)], bearer: client, now: T0 }))));
    more.forEach((t, i) => expect(v.verify(t, { ...req, op: 'get', chunkId: id(i + 4) }).ok).toBe(true));
    expect(v.size).toBe(2);
    expect(refusal(v.verify(putTicket, { ...req, now: T0 + 60_000 })).reason).toBe('expired');
    expect(refusal(v.verify(more[2], { ...req, op: 'get', chunkId: id(6), now: T0 + 60_000 })).reason).toBe('expired');
    expect(v.size).toBe(1);
  });

  it('cost per verify on the data path (printed)', async () => {
    // CPU time of this process (wall time on a shared, loaded machine mostly measures the others),
    // interleaved rounds, best round kept. Yardsticks run in the same rounds.
    const { publicKey: _, ...req } = request();
    const ids64 = Array.from({ length: 64 }, (_, i) => id(i + 1000));
    const t64 = await signTicket(clusterKey, newTicketClaims({ op: 'get', ids: ids64, bearer: client, now: T0 }));
    const v = new TicketVerifier({ publicKey: clusterKey.publicKey });
    const raw = generateKeyPairSync('ed25519');
    const msg = Buffer.alloc(200, 1);
    const rawSig = cryptoSign(null, msg, raw.privateKey);
    const libSig = await clusterKey.sign(msg);
    const cases: Record<string, { runs: number; fn: () => unknown }> = {
      '2 ids': { runs: 100, fn: () => verifyTicket(putTicket, request()).ok || fail() },
      '64 ids': { runs: 50, fn: () => verifyTicket(t64, request({ op: 'get', chunkId: ids64[40] ?? '', fence: undefined })).ok || fail() },
      cached: { runs: 5000, fn: () => v.verify(t64, { ...req, op: 'get', chunkId: ids64[40] ?? '' }).ok || fail() },
      'node:crypto': { runs: 100, fn: () => cryptoVerify(null, msg, raw.publicKey, rawSig) || fail() },
      libp2p: { runs: 50, fn: () => clusterKey.publicKey.verify(msg, libSig) },
    };
    const best: Record<string, number> = {};
    for (let round = 0; round < 5; round++) {
      for (const [name, { runs, fn }] of Object.entries(cases)) {
        const t = process.cpuUsage();
        for (let i = 0; i < runs; i++) await fn();
        const used = process.cpuUsage(t);
        const us = (used.user + used.system) / runs;
        best[name] = Math.min(best[name] ?? Infinity, us);
      }
    }
    const f = (name: string): string => (best[name] ?? NaN).toFixed(name === 'cached' ? 2 : 1);
    console.log(
      `[bench] ticket verify per chunk request: ${f('2 ids')} µs (2 ids, signature checked), ${f('64 ids')} µs (64 ids, ${t64.length} chars), ` +
        `${f('cached')} µs (TicketVerifier hit); yardsticks, same rounds: bare node:crypto Ed25519 verify ${f('node:crypto')} µs, ` +
        `libp2p publicKey.verify ${f('libp2p')} µs (CPU time, best of 5 rounds)`,
    );
    expect(best['cached']).toBeLessThan(best['2 ids'] ?? 0);
  });
});
