import { GEAR_V1 } from '../../src/chunker/gear.ts';

/**
 * A deliberately plain FastCDC 2020 (normalised level 2), written straight from the paper, one
 * byte per step, no resumable state: the independent reference the optimised scanner is checked
 * against and that produced the known-answer vectors.
 */
export interface ReferenceParams {
  minSize: number;
  avgSize: number;
  maxSize: number;
}

function topMask(ones: number): number {
  let m = 0;
  for (let b = 30; b > 30 - ones; b--) m |= 1 << b;
  return m;
}

export function referenceCut(buf: Uint8Array, start: number, end: number, p: ReferenceParams): number {
  const n = end - start;
  if (n <= p.minSize) return end;
  const bits = Math.round(Math.log2(p.avgSize));
  const maskS = topMask(bits + 2);
  const maskL = topMask(bits - 2);
  const limit = Math.min(n, p.maxSize);
  const normal = Math.min(limit, p.avgSize);
  let h = 0;
  let i = p.minSize;
  for (; i < normal; i++) {
    h = ((h << 1) + GEAR_V1[buf[start + i]!]!) | 0;
    if ((h & maskS) === 0) return start + i + 1;
  }
  for (; i < limit; i++) {
    h = ((h << 1) + GEAR_V1[buf[start + i]!]!) | 0;
    if ((h & maskL) === 0) return start + i + 1;
  }
  return start + limit;
}

export function referenceChunks(buf: Uint8Array, p: ReferenceParams): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let start = 0; start < buf.length; ) {
    const end = referenceCut(buf, start, buf.length, p);
    out.push([start, end - start]);
    start = end;
  }
  return out;
}
