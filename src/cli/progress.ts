import { formatBytes } from './format.ts';

/** Where a progress bar draws: a terminal's width is in `columns`. */
export interface ProgressOut {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

/**
 * A one-line progress bar on stderr (bytes, rate, ETA), redrawn at most every `intervalMs`.
 * Drawn only when stderr is a terminal and not `quiet`, so scripts and CI logs stay clean. The
 * line is clipped to the terminal's width: a line that wrapped would leave its first row behind
 * at every redraw (the carriage return only goes back to the start of the last row).
 */
export class ProgressBar {
  readonly #out: ProgressOut;
  readonly #label: string;
  readonly #total: number | undefined;
  readonly #now: () => number;
  readonly #intervalMs: number;
  readonly #startMs: number;
  readonly #enabled: boolean;
  #done = 0;
  #lastDrawMs = -Infinity;
  #drawn = false;

  constructor(options: {
    out: ProgressOut;
    label: string;
    totalBytes?: number | undefined;
    now?: () => number;
    intervalMs?: number;
    quiet?: boolean | undefined;
  }) {
    this.#out = options.out;
    this.#label = options.label;
    this.#total = options.totalBytes;
    this.#now = options.now ?? (() => performance.now());
    this.#intervalMs = options.intervalMs ?? 100;
    this.#startMs = this.#now();
    this.#enabled = this.#out.isTTY === true && options.quiet !== true;
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  advance(bytes: number): void {
    this.#done += bytes;
    const now = this.#now();
    if (this.#enabled && now - this.#lastDrawMs >= this.#intervalMs) {
      this.#lastDrawMs = now;
      this.#draw(now);
    }
  }

  /** The final figures, and a newline: the line stays. */
  finish(): void {
    if (!this.#enabled) return;
    this.#draw(this.#now());
    this.#out.write('\n');
    this.#drawn = false;
  }

  /** Erases the line (the command failed: its error takes the line instead). */
  clear(): void {
    if (this.#enabled && this.#drawn) this.#out.write('\r\x1b[K');
    this.#drawn = false;
  }

  #draw(nowMs: number): void {
    this.#out.write(`\r${clip(this.render(nowMs), this.#out.columns)}\x1b[K`);
    this.#drawn = true;
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

/**
 * `line` cut to fit `columns - 1` characters (a full-width line makes some terminals wrap at once),
 * the label's start replaced by "…" so the figures at the end stay visible.
 */
export function clip(line: string, columns: number | undefined): string {
  if (columns === undefined || columns <= 1) return line;
  const max = columns - 1;
  if (line.length <= max) return line;
  return max <= 1 ? line.slice(0, max) : `…${line.slice(line.length - max + 1)}`;
}
