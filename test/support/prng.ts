/**
 * A tiny seeded PRNG (SplitMix32-style) for reproducible test data. Fixed forever: the
 * chunker's known-answer vectors are computed over its output.
 */
export class SeededBytes {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  nextU32(): number {
    let z = (this.#state = (this.#state + 0x9e3779b9) | 0);
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  }

  /** Fills `out` little-endian word by word, so the bytes are the same on every platform. */
  fill(out: Uint8Array): Uint8Array {
    let i = 0;
    for (; i + 4 <= out.length; i += 4) {
      const w = this.nextU32();
      out[i] = w & 0xff;
      out[i + 1] = (w >>> 8) & 0xff;
      out[i + 2] = (w >>> 16) & 0xff;
      out[i + 3] = w >>> 24;
    }
    if (i < out.length) {
      const w = this.nextU32();
      for (let k = 0; i < out.length; i++, k++) out[i] = (w >>> (8 * k)) & 0xff;
    }
    return out;
  }

  bytes(length: number): Uint8Array {
    return this.fill(new Uint8Array(length));
  }
}
