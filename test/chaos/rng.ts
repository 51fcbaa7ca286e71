import { SeededBytes } from '../support/prng.ts';

/** Seeded choices for the chaos harness: the same seed gives the same choices, on every platform. */
export class Rng {
  readonly #bytes: SeededBytes;

  constructor(seed: number) {
    this.#bytes = new SeededBytes(seed >>> 0);
  }

  /** An independent stream for one purpose (a worker, a lane), so adding draws elsewhere changes nothing here. */
  static derive(seed: number, stream: number): Rng {
    return new Rng(Math.imul((seed ^ 0x5bd1e995) >>> 0, 0x9e3779b1) ^ Math.imul(stream + 1, 0x85ebca6b));
  }

  u32(): number {
    return this.#bytes.nextU32();
  }

  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor((this.u32() / 2 ** 32) * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from nothing');
    return items[this.int(0, items.length - 1)]!;
  }

  /** A key of `weights` chosen with probability proportional to its weight. */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    const entries = Object.entries(weights) as Array<[K, number]>;
    const total = entries.reduce((sum, [, w]) => sum + w, 0);
    let x = (this.u32() / 2 ** 32) * total;
    for (const [key, w] of entries) {
      if (x < w) return key;
      x -= w;
    }
    return entries[entries.length - 1]![0];
  }

  /** `count` distinct items, in the order drawn. */
  sample<T>(items: readonly T[], count: number): T[] {
    const rest = [...items];
    const out: T[] = [];
    while (out.length < count && rest.length > 0) out.push(rest.splice(this.int(0, rest.length - 1), 1)[0]!);
    return out;
  }
}
