import { describe, expect, it } from 'vitest';
import { DfsError } from '../../src/errors/index.ts';
import {
  argon2Backend,
  DEFAULT_ARGON2_PARAMS,
  hashPassword,
  MAX_PASSWORD_BYTES,
  needsRehash,
  parseStoredPassword,
  storedPasswordSchema,
  verifyPassword,
} from '../../src/auth/index.ts';
import type { Argon2Backend } from '../../src/auth/index.ts';

// Cheap parameters: the tests check the format and the logic, not argon2's cost.
const CHEAP = { memoryKiB: 64, iterations: 1, parallelism: 1 } as const;
const BACKENDS: Argon2Backend[] = argon2Backend('auto') === 'native' ? ['wasm', 'native'] : ['wasm'];

/** A seeded rng in [0, 1). */
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let z = Math.imul(s ^ (s >>> 15), 1 | s);
    z = (z + Math.imul(z ^ (z >>> 7), 61 | z)) ^ z;
    return ((z ^ (z >>> 14)) >>> 0) / 2 ** 32;
  };
}

describe('passwords: refusals first', () => {
  it('a wrong password, or a stored value of another password, is false', async () => {
    const stored = await hashPassword('correct horse', { params: CHEAP });
    expect(await verifyPassword('correct hors', stored)).toBe(false);
    expect(await verifyPassword('Correct horse', stored)).toBe(false);
    expect(await verifyPassword('', stored)).toBe(false);
    expect(await verifyPassword('correct horse', await hashPassword('other', { params: CHEAP }))).toBe(false);
  });

  it('a malformed stored value is false, never a throw', async () => {
    const good = await hashPassword('pw', { params: CHEAP, salt: new Uint8Array(16).fill(7) });
    const [, , , , salt, hash] = good.split('$');
    const bad: unknown[] = [
      '',
      'x',
      '$argon2id$',
      good.replace('$argon2id$', '$argon2i$'),
      good.replace('$argon2id$', '$argon2d$'),
      good.replace('v=19', 'v=16'),
      good.replace('m=64', 'm=4'), // below 8 x p
      good.replace('m=64', 'm=99999999'), // above the limit
      good.replace('t=1', 't=0'),
      good.replace('t=1', 't=999'),
      good.replace('p=1', 'p=0'),
      good.replace('p=1', 'p=17'),
      `$argon2id$v=19$m=64,t=1,p=1$${salt}$`, // no hash
      `$argon2id$v=19$m=64,t=1,p=1$$${hash}`, // no salt
      `$argon2id$v=19$m=64,t=1,p=1$AAAA$${hash}`, // 3-byte salt
      `$argon2id$v=19$m=64,t=1,p=1$${salt}$AAAA`, // 3-byte hash
      `${good}=`, // padding
      `${good}$extra`,
      good.slice(0, -1) + (good.endsWith('A') ? 'B' : 'A'), // another hash: false by comparison
      good.replace(/\$([A-Za-z0-9+/]+)$/, '$$$1!'),
      ` ${good}`,
      good.replace('m=64,t=1,p=1', 't=1,m=64,p=1'),
      good + 'A'.repeat(600),
      42,
      null,
      { stored: good },
    ];
    for (const value of bad) {
      // @ts-expect-error: also what a corrupt state could hand over
      await expect(verifyPassword('pw', value)).resolves.toBe(false);
    }
    expect(await verifyPassword('pw', good)).toBe(true);
  });

  it('an unknown user (no stored value) is false after the same work', async () => {
    expect(await verifyPassword('anything', undefined)).toBe(false);
  });

  it('over-long and non-string passwords are false to verify and refused to hash, never quoted', async () => {
    const stored = await hashPassword('pw', { params: CHEAP });
    const long = 'p'.repeat(MAX_PASSWORD_BYTES + 1);
    expect(await verifyPassword(long, stored)).toBe(false);
    // @ts-expect-error: a wire value that is not a string
    expect(await verifyPassword(123, stored)).toBe(false);
    for (const pw of [long, '', 'é'.repeat(MAX_PASSWORD_BYTES / 2 + 1)]) {
      const err = await hashPassword(pw, { params: CHEAP }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DfsError);
      expect((err as DfsError).code).toBe('ERR_INVALID_ARGUMENT');
      if (pw.length > 0) expect((err as DfsError).message).not.toContain(pw.slice(0, 8));
    }
  });

  it('parameters out of range are refused', async () => {
    for (const params of [{ memoryKiB: 4 }, { iterations: 0 }, { parallelism: 0 }, { parallelism: 2, memoryKiB: 8 }, { hashBytes: 8 }, { memoryKiB: 1.5 }]) {
      await expect(hashPassword('pw', { params })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    }
    await expect(hashPassword('pw', { params: CHEAP, salt: new Uint8Array(4) })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe('passwords', () => {
  it('round trip; parameters and salt are stored beside the hash (PHC string)', async () => {
    const stored = await hashPassword('correct horse battery staple', { params: CHEAP });
    expect(stored).toMatch(/^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    expect(() => storedPasswordSchema.parse(stored)).not.toThrow();
    expect(await verifyPassword('correct horse battery staple', stored)).toBe(true);
    const parsed = parseStoredPassword(stored);
    expect(parsed?.params).toEqual({ memoryKiB: 64, iterations: 1, parallelism: 1, hashBytes: 32 });
    expect(parsed?.salt.byteLength).toBe(16);
    expect(parsed?.hash.byteLength).toBe(32);
  });

  it('defaults are OWASP argon2id: 19 MiB, t=2, p=1', async () => {
    expect(DEFAULT_ARGON2_PARAMS).toEqual({ memoryKiB: 19_456, iterations: 2, parallelism: 1, hashBytes: 32 });
    const stored = await hashPassword('pw');
    expect(stored).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(needsRehash(stored)).toBe(false);
  });

  it("matches the reference implementation's argon2id vector, on every backend", async () => {
    // From the argon2 reference implementation's tests: argon2id v19, t=2, m=2^8, p=1.
    const salt = new TextEncoder().encode('somesalt');
    for (const backend of BACKENDS) {
      const stored = await hashPassword('password', { salt, params: { memoryKiB: 256, iterations: 2, parallelism: 1 }, backend });
      expect(stored).toBe('$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4');
      expect(await verifyPassword('password', stored, { backend })).toBe(true);
    }
  });

  it('the wasm and native backends agree (p > 1 too)', async () => {
    if (BACKENDS.length < 2) return;
    const salt = new Uint8Array(16).fill(3);
    for (const params of [CHEAP, { memoryKiB: 128, iterations: 3, parallelism: 4, hashBytes: 48 }]) {
      const a = await hashPassword('pässwörd', { salt, params, backend: 'wasm' });
      const b = await hashPassword('pässwörd', { salt, params, backend: 'native' });
      expect(a).toBe(b);
    }
  });

  it('an injected rng makes the salt deterministic', async () => {
    const a = await hashPassword('pw', { params: CHEAP, rng: seeded(1) });
    const b = await hashPassword('pw', { params: CHEAP, rng: seeded(1) });
    const c = await hashPassword('pw', { params: CHEAP, rng: seeded(2) });
    expect(a).toBe(b);
    expect(c).not.toBe(a);
    expect(await hashPassword('pw', { params: CHEAP })).not.toBe(await hashPassword('pw', { params: CHEAP }));
  });

  it('passwords are compared in Unicode NFC', async () => {
    const stored = await hashPassword('caf\u00e9', { params: CHEAP });
    expect(await verifyPassword('cafe\u0301', stored)).toBe(true);
  });

  it('needsRehash tells when the stored parameters are not the wanted ones', async () => {
    const stored = await hashPassword('pw', { params: CHEAP });
    expect(needsRehash(stored, CHEAP)).toBe(false);
    expect(needsRehash(stored)).toBe(true);
    expect(needsRehash(stored, { ...CHEAP, iterations: 2 })).toBe(true);
    expect(needsRehash('garbage')).toBe(true);
  });
});
