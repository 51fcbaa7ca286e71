import { type Clock, systemClock, type TimerHandle } from '../env/index.ts';
import { DfsError, isDfsError } from '../errors/index.ts';
import type { ChunkStore } from '../storage/index.ts';

export interface ScrubberOptions {
  readonly store: ChunkStore;
  /** Time and timers (pacing, rests): the store's clock should tell the same time. Default: the system's. */
  readonly clock?: Clock;
  /**
   * Every chunk is re-hashed within this period: a pass skips chunks verified more recently, and
   * paces itself to get through the store's bytes in this time. Default 7 days.
   */
  readonly scrubIntervalMs?: number;
  /** The slowest pace, bytes per second (a small store is still checked promptly). Default 1 MiB/s. */
  readonly minBytesPerSec?: number;
  /** Quarantined files are deleted after this long. Default 24 hours. */
  readonly quarantineRetentionMs?: number;
  /** Where failures go (the scrubber keeps going). Default: dropped. */
  readonly onError?: (err: unknown) => void;
}

/** What one pass did. */
export interface ScrubPass {
  /** Chunks re-hashed. */
  readonly checked: number;
  readonly bytes: number;
  /** Chunks found missing or corrupt, and quarantined. */
  readonly quarantined: number;
  /** Chunks skipped: verified within the period. */
  readonly skipped: number;
  /** The pass was cut short (stop, or a scrubNow taking over). */
  readonly interrupted: boolean;
}

export interface ScrubberStats {
  passes: number;
  chunksChecked: number;
  bytesChecked: number;
  quarantined: number;
  /** Quarantined files deleted after their retention. */
  swept: number;
}

const DAY_MS = 24 * 60 * 60_000;
export const DEFAULT_SCRUB_INTERVAL_MS = 7 * DAY_MS;
export const DEFAULT_SCRUB_MIN_BYTES_PER_SEC = 1024 * 1024;
export const DEFAULT_QUARANTINE_RETENTION_MS = DAY_MS;
/** Pacing sleeps shorter than this are carried over (no timer per small chunk). */
const MIN_SLEEP_MS = 100;
/** Index entries read at a time: no iterator (and its LevelDB snapshot) is held across sleeps. */
const PAGE = 256;

/**
 * Re-hashes every chunk of a store in the background, so that bit rot is found before a read
 * needs the copy: each chunk at least once per `scrubIntervalMs`, the work paced evenly (bytes/s
 * from the store's size and the period, never below `minBytesPerSec`), chunks verified within the
 * period (by a put, a verify request or an earlier pass: the index's verifiedAtMs) skipped. A
 * missing or corrupt chunk is quarantined (ChunkStore.verifyOrQuarantine): moved out of the chunk
 * tree, never served, reported removed by the next heartbeat so the leader copies it again.
 * Between passes it rests (a twenty-fourth of the period, at most an hour), and it deletes
 * quarantined files older than the retention.
 *
 * `scrubNow()` runs a pass at once, unpaced and skipping nothing (`dfs node scrub <node> --now`).
 * Time and timers come from the injected clock, so tests drive the pacing without sleeping.
 */
export class Scrubber {
  readonly stats: ScrubberStats = { passes: 0, chunksChecked: 0, bytesChecked: 0, quarantined: 0, swept: 0 };
  readonly #store: ChunkStore;
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #minBytesPerSec: number;
  readonly #retentionMs: number;
  readonly #restMs: number;
  readonly #onError: (err: unknown) => void;
  /** Callers of scrubNow waiting for the next urgent pass. */
  #nowWaiters: Array<PromiseWithResolvers<ScrubPass>> = [];
  #running: Promise<void> | undefined;
  #stopped = false;
  /** Ends the current sleep early (stop, scrubNow). */
  #wake: (() => void) | undefined;

  constructor(options: ScrubberOptions) {
    this.#store = options.store;
    this.#clock = options.clock ?? systemClock;
    this.#intervalMs = positive('scrubIntervalMs', options.scrubIntervalMs ?? DEFAULT_SCRUB_INTERVAL_MS);
    this.#minBytesPerSec = positive('minBytesPerSec', options.minBytesPerSec ?? DEFAULT_SCRUB_MIN_BYTES_PER_SEC);
    this.#retentionMs = nonNegative('quarantineRetentionMs', options.quarantineRetentionMs ?? DEFAULT_QUARANTINE_RETENTION_MS);
    this.#restMs = Math.min(60 * 60_000, Math.max(1_000, Math.floor(this.#intervalMs / 24)));
    this.#onError = options.onError ?? (() => {});
  }

  /** Starts the background passes (the first at once). */
  start(): void {
    if (this.#running || this.#stopped) return;
    this.#running = this.#loop();
  }

  /** Stops: the pass under way ends after the chunk being hashed. Waiting scrubNow calls get what was done. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    await this.#running;
    for (const waiter of this.#nowWaiters.splice(0)) waiter.reject(new DfsError('ERR_ABORTED', 'the scrubber stopped'));
  }

  /**
   * Re-hashes every chunk now, without pacing and skipping none (a paced pass under way gives
   * way). Resolves with what that pass did. Calls made while one is waiting share its pass.
   */
  scrubNow(): Promise<ScrubPass> {
    if (this.#stopped) return Promise.reject(new DfsError('ERR_ABORTED', 'the scrubber is stopped'));
    const waiter = Promise.withResolvers<ScrubPass>();
    this.#nowWaiters.push(waiter);
    if (!this.#running) this.start();
    this.#wake?.();
    return waiter.promise;
  }

  /** The pace of paced passes for the store as it is now, in bytes per second. */
  async pace(): Promise<number> {
    const { bytes } = await this.#store.stats();
    return Math.max(this.#minBytesPerSec, (bytes * 1000) / this.#intervalMs);
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      const waiters = this.#nowWaiters.splice(0);
      try {
        const pass = await this.#pass(waiters.length > 0);
        for (const waiter of waiters) waiter.resolve(pass);
      } catch (err) {
        for (const waiter of waiters) waiter.reject(err);
        if (this.#stopped || isDfsError(err, 'ERR_STORE_CLOSED')) break;
        this.#onError(err);
      }
      await this.#sweep();
      if (this.#nowWaiters.length === 0) await this.#sleep(this.#restMs);
    }
  }

  async #pass(urgent: boolean): Promise<ScrubPass> {
    const pace = urgent ? Infinity : await this.pace();
    let checked = 0;
    let bytes = 0;
    let quarantined = 0;
    let skipped = 0;
    let interrupted = false;
    /** Sleep owed to the pace and not taken yet. */
    let owedMs = 0;
    let after: string | undefined;
    this.stats.passes++;
    pages: for (;;) {
      const page = [];
      for await (const entry of this.#store.list({ ...(after === undefined ? {} : { after }), limit: PAGE })) page.push(entry);
      for (const entry of page) {
        after = entry.id;
        if (this.#stopped || (!urgent && this.#nowWaiters.length > 0)) {
          interrupted = true;
          break pages;
        }
        if (!urgent && this.#clock.now() - entry.verifiedAtMs < this.#intervalMs) {
          skipped++;
          continue;
        }
        let outcome;
        try {
          outcome = await this.#store.verifyOrQuarantine(entry.id);
        } catch (err) {
          if (isDfsError(err, 'ERR_STORE_CLOSED')) throw err;
          this.#onError(err); // this chunk could not be checked now (EMFILE...): the next pass tries again
          continue;
        }
        if (outcome === 'absent') continue; // deleted since the page was read
        checked++;
        bytes += entry.size;
        this.stats.chunksChecked++;
        this.stats.bytesChecked += entry.size;
        if (outcome === 'quarantined') {
          quarantined++;
          this.stats.quarantined++;
        }
        owedMs += (entry.size * 1000) / pace;
        if (owedMs >= MIN_SLEEP_MS) {
          await this.#sleep(owedMs);
          owedMs = 0;
        }
      }
      if (page.length < PAGE) break;
    }
    return { checked, bytes, quarantined, skipped, interrupted };
  }

  async #sweep(): Promise<void> {
    if (this.#stopped) return;
    try {
      this.stats.swept += await this.#store.sweepQuarantine(this.#retentionMs);
    } catch (err) {
      if (!isDfsError(err, 'ERR_STORE_CLOSED')) this.#onError(err);
    }
  }

  /** Waits `ms` on the clock, or until woken (stop, scrubNow). */
  #sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let timer: TimerHandle | undefined;
      const done = (): void => {
        timer?.cancel();
        if (this.#wake === done) this.#wake = undefined;
        resolve();
      };
      this.#wake = done;
      timer = this.#clock.setTimeout(done, ms);
    });
  }
}

function positive(name: string, value: number): number {
  if (!(Number.isFinite(value) && value > 0)) throw new DfsError('ERR_INVALID_ARGUMENT', `${name} must be a positive number, got ${value}`);
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!(Number.isFinite(value) && value >= 0)) throw new DfsError('ERR_INVALID_ARGUMENT', `${name} must be a number >= 0, got ${value}`);
  return value;
}
