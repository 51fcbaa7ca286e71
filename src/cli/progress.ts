import { formatBytes } from './format.ts';

/**
 * A one-line progress bar on stderr (bytes, rate, ETA), redrawn at most every `intervalMs`.
 * Silent when stderr is not a terminal, so scripts and CI logs stay clean.
 */
export class ProgressBar {
  readonly #out: { write(text: string): unknown; readonly isTTY?: boolean };
  readonly #label: string;
  readonly #total: number | undefined;
  readonly #now: () => number;
  readonly #intervalMs: number;
  readonly #startMs: number;
  #done = 0;
  #lastDrawMs = -Infinity;

  constructor(options: {
    out: { write(text: string): unknown; readonly isTTY?: boolean };
    label: string;
    totalBytes?: number;
    now?: () => number;
    intervalMs?: number;
  }) {
    this.#out = options.out;
    this.#label = options.label;
    this.#total = options.totalBytes;
    this.#now = options.now ?? (() => performance.now());
    this.#intervalMs = options.intervalMs ?? 100;
    this.#startMs = this.#now();
  }

  get enabled(): boolean {
    return this.#out.isTTY === true;
  }

  advance(bytes: number): void {
    this.#done += bytes;
    const now = this.#now();
    if (this.enabled && now - this.#lastDrawMs >= this.#intervalMs) {
      this.#lastDrawMs = now;
      this.#out.write(`\r${this.render(now)}\x1b[K`);
    }
  }

  finish(): void {
    if (this.enabled) this.#out.write(`\r${this.render(this.#now())}\x1b[K\n`);
  }

  render(nowMs: number): string {
    const seconds = Math.max((nowMs - this.#startMs) / 1000, 1e-3);
    const rate = this.#done / seconds;
    const parts = [this.#label];
    if (this.#total !== undefined && this.#total > 0) {
      const fraction = Math.min(this.#done / this.#total, 1);
      const width = 24;
      const filled = Math.round(fraction * width);
      parts.push(`[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`, `${(fraction * 100).toFixed(0).padStart(3)}%`);
      parts.push(`${formatBytes(this.#done)}/${formatBytes(this.#total)}`);
      const etaSeconds = rate > 0 ? (this.#total - this.#done) / rate : Infinity;
      parts.push(`${formatBytes(rate)}/s`, `ETA ${Number.isFinite(etaSeconds) ? `${etaSeconds.toFixed(0)}s` : '?'}`);
    } else {
      parts.push(formatBytes(this.#done), `${formatBytes(rate)}/s`);
    }
    return parts.join(' ');
  }
}
