import { describe, expect, it } from 'vitest';
import { isDfsError } from '../../src/errors/index.ts';
import { DeleteFences } from '../../src/storage/index.ts';

const X = 'a'.repeat(64);
const Y = 'b'.repeat(64);

describe('DeleteFences', () => {
  it('refuses every delete until a floor is known, then deletes above it', () => {
    const fences = new DeleteFences();
    expect(fences.floor).toBeUndefined();
    expect(fences.mayDelete(X, Number.MAX_SAFE_INTEGER)).toBe(false);
    fences.raiseFloor(100);
    expect(fences.mayDelete(X, 100)).toBe(false);
    expect(fences.mayDelete(X, 101)).toBe(true);
    fences.raiseFloor(50); // never lowered
    expect(fences.floor).toBe(100);
  });

  it('keeps a chunk from deletes not newer than its highest put fence', () => {
    const fences = new DeleteFences({ floor: 0 });
    fences.notePut(X, 10);
    fences.notePut(X, 7); // a late, older put does not lower it
    expect(fences.mayDelete(X, 5)).toBe(false);
    expect(fences.mayDelete(X, 10)).toBe(false);
    expect(fences.mayDelete(X, 11)).toBe(true);
    expect(fences.mayDelete(Y, 5)).toBe(true); // another id: no put known
  });

  it('forgets the older of two generations beyond its capacity, raising the floor to its highest fence', () => {
    const [A, B, C, D, E] = ['a', 'b', 'c', 'd', 'e'].map((h) => h.repeat(64)) as [string, string, string, string, string];
    const fences = new DeleteFences({ capacity: 4, floor: 0 }); // generations of 2
    fences.notePut(A, 10);
    fences.notePut(B, 20); // the young generation is full: it ages
    fences.notePut(C, 30);
    expect(fences.floor).toBe(0);
    expect(fences.mayDelete(A, 11)).toBe(true);
    expect(fences.mayDelete(B, 15)).toBe(false);
    fences.notePut(A, 40); // A is young again; then the young generation is full: B is forgotten
    expect(fences.floor).toBe(20);
    expect(fences.size).toBe(2);
    expect(fences.mayDelete(B, 20)).toBe(false); // forgotten, but covered by the floor
    expect(fences.mayDelete(B, 21)).toBe(true);
    expect(fences.mayDelete(A, 35)).toBe(false); // still known one by one
    expect(fences.mayDelete(C, 25)).toBe(false);
    expect(fences.mayDelete(C, 31)).toBe(true);
    fences.notePut(D, 50);
    fences.notePut(E, 60); // A and C are forgotten
    expect(fences.floor).toBe(40);
    expect(fences.mayDelete(C, 31)).toBe(false);
    expect(fences.mayDelete(C, 41)).toBe(true);
    expect(fences.mayDelete(E, 55)).toBe(false);
  });

  it('never holds more than its capacity, and always knows the latest half of it one by one', () => {
    for (const capacity of [1, 2, 5, 64]) {
      const fences = new DeleteFences({ capacity, floor: 0 });
      for (let i = 1; i <= 1000; i++) {
        fences.notePut(i.toString(16).padStart(64, '0'), i);
        expect(fences.size).toBeLessThanOrEqual(capacity);
      }
      for (let i = 1000; i > 1000 - Math.ceil(capacity / 2); i--) expect(fences.mayDelete(i.toString(16).padStart(64, '0'), i)).toBe(false);
      expect(fences.floor).toBeLessThan(1000 - Math.ceil(capacity / 2) + 1);
    }
  });

  it('refuses what is not a fence', () => {
    const fences = new DeleteFences();
    for (const bad of [-1, 1.5, 2 ** 53, Number.NaN]) {
      expect(isDfsError(catching(() => fences.notePut(X, bad)), 'ERR_INVALID_ARGUMENT')).toBe(true);
      expect(isDfsError(catching(() => fences.mayDelete(X, bad)), 'ERR_INVALID_ARGUMENT')).toBe(true);
      expect(isDfsError(catching(() => fences.raiseFloor(bad)), 'ERR_INVALID_ARGUMENT')).toBe(true);
    }
    expect(isDfsError(catching(() => new DeleteFences({ capacity: 0 })), 'ERR_INVALID_ARGUMENT')).toBe(true);
  });
});

function catching(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}
