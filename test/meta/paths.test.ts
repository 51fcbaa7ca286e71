import { describe, expect, it } from 'vitest';
import { isDfsError } from '../../src/errors/index.ts';
import { baseName, isWithin, joinPath, normalizePath, parentOf } from '../../src/meta/index.ts';

function reason(input: unknown): string {
  try {
    normalizePath(input);
  } catch (err) {
    expect(isDfsError(err, 'ERR_INVALID_PATH')).toBe(true);
    return (err as Error).message;
  }
  throw new Error(`${String(input)} was accepted`);
}

describe('dfs paths', () => {
  it('canonicalises', () => {
    expect(normalizePath('/')).toBe('/');
    expect(normalizePath('/a/b/')).toBe('/a/b');
    expect(normalizePath('/caf\u0065\u0301')).toBe('/caf\u00e9'); // NFC
    expect(normalizePath('/with space/ünï')).toBe('/with space/ünï');
  });

  it('refuses what is not a canonical absolute path, saying why', () => {
    expect(reason('a/b')).toMatch(/absolute/);
    expect(reason('')).toMatch(/absolute/);
    expect(reason('/a//b')).toMatch(/empty path segment/);
    expect(reason('/a/../b')).toMatch(/".." is not allowed/);
    expect(reason('/a/./b')).toMatch(/"\." is not allowed/);
    expect(reason('/a\nb')).toMatch(/control characters/);
    expect(reason(`/${'x'.repeat(256)}`)).toMatch(/longer than 255 bytes/);
    expect(reason(`/${'é'.repeat(128)}`)).toMatch(/longer than 255 bytes/); // 256 UTF-8 bytes
    expect(reason(`/${Array.from({ length: 300 }, () => 'a').join('/')}`)).toMatch(/levels deep/);
    expect(reason(`/${Array.from({ length: 20 }, () => 'x'.repeat(250)).join('/')}`)).toMatch(/longer than 4096/);
    expect(reason(42)).toMatch(/string/);
  });

  it('splits and joins', () => {
    expect(parentOf('/a/b')).toBe('/a');
    expect(parentOf('/a')).toBe('/');
    expect(parentOf('/')).toBe('/');
    expect(baseName('/a/b')).toBe('b');
    expect(joinPath('/', 'a')).toBe('/a');
    expect(joinPath('/a', 'b')).toBe('/a/b');
    expect(isWithin('/a/b', '/a')).toBe(true);
    expect(isWithin('/ab', '/a')).toBe(false);
    expect(isWithin('/a', '/')).toBe(true);
  });
});
