import { type Clock, systemClock } from '../env/index.ts';
import { DfsError, isDfsError } from '../errors/index.ts';
import { type Logger, silentLogger } from '../log/index.ts';

/** What a leader-only task sees of the leadership it runs under. */
export interface LeaderContext {
  /** The term this leadership belongs to. */
  readonly term: number;
  /** Aborted the moment this master stops leading in `term` (or stops altogether). */
  readonly signal: AbortSignal;
  /**
   * Confirms, through a quorum (ReadIndex), that this master still leads in `term` and has
   * applied everything committed before now; ERR_NOT_LEADER otherwise. Call it before every
   * destructive step, after deciding it and before doing it.
   */
  confirm(): Promise<void>;
  /** Waits `ms`; rejects with ERR_NOT_LEADER as soon as the leadership ends. */
  sleep(ms: number): Promise<void>;
  /**
   * Whether this master still leads in `term` as far as it knows right now. confirm() is a
   * promise: by the time the code after it runs, the driver may have stepped a higher-term
   * message. Check this synchronously right before each destructive step.
   */
  leading(): boolean;
}

/** A job only the leader does (GC, repair, ...): runs until its context's signal aborts. */
export interface LeaderTask {
  readonly name: string;
  run(ctx: LeaderContext): Promise<void>;
}

/** The part of the Raft driver the host needs (RaftDriver satisfies it). */
export interface LeadershipSource {
  readonly role: string;
  readonly term: number;
  readBarrier(): Promise<void>;
  onChange(listener: () => void): () => void;
}

export interface LeaderTaskHostOptions {
  readonly driver: LeadershipSource;
  readonly tasks: readonly LeaderTask[];
  readonly clock?: Clock;
  readonly logger?: Logger;
  /** Pause before a task that threw is started again (same leadership). Default 1 s. */
  readonly restartDelayMs?: number;
}

interface Leadership {
  readonly term: number;
  readonly controller: AbortController;
  confirmed: boolean;
}

/**
 * Runs leader-only tasks under one rule: they start once leadership in a term is confirmed by a
 * quorum (a ReadIndex barrier, which also means the state machine has applied everything the
 * previous leader committed) and are aborted on any loss of it — a new term, a step-down, or a
 * driver that stopped or failed. A task never outlives the leadership it started under.
 */
export class LeaderTaskHost {
  readonly #o: LeaderTaskHostOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  #current: Leadership | undefined;
  #off: (() => void) | undefined;
  readonly #running = new Set<Promise<void>>();

  constructor(options: LeaderTaskHostOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = (options.logger ?? silentLogger).child({ component: 'leader-tasks' });
  }

  start(): void {
    this.#off = this.#o.driver.onChange(() => this.#follow());
    this.#follow();
  }

  /** Aborts every task and waits for them to return. */
  async stop(): Promise<void> {
    this.#off?.();
    this.#end('host stopped');
    await Promise.allSettled([...this.#running]);
  }

  /** The term whose leadership is confirmed and whose tasks run, if any. */
  get confirmedTerm(): number | null {
    return this.#current?.confirmed ? this.#current.term : null;
  }

  #follow(): void {
    const { role, term } = this.#o.driver;
    const current = this.#current;
    if (current && (role !== 'leader' || term !== current.term)) this.#end(role === 'leader' ? `term moved to ${term}` : `now ${role}`);
    if (role === 'leader' && !this.#current) this.#begin(term);
  }

  #begin(term: number): void {
    const leadership: Leadership = { term, controller: new AbortController(), confirmed: false };
    this.#current = leadership;
    void this.#confirmThenRun(leadership);
  }

  #end(why: string): void {
    const current = this.#current;
    if (!current) return;
    this.#current = undefined;
    current.controller.abort(new DfsError('ERR_NOT_LEADER', `leadership of term ${current.term} ended (${why})`));
    if (current.confirmed) this.#log.info({ term: current.term, why }, 'leader-only tasks stopped');
  }

  async #confirmThenRun(leadership: Leadership): Promise<void> {
    const ctx = this.#context(leadership);
    // Retry the barrier while the leadership lasts: a fresh leader may need its no-op committed.
    for (;;) {
      try {
        await ctx.confirm();
        break;
      } catch {
        if (leadership.controller.signal.aborted) return;
        try {
          await ctx.sleep(100);
        } catch {
          return;
        }
      }
    }
    leadership.confirmed = true;
    this.#log.info({ term: leadership.term, tasks: this.#o.tasks.map((t) => t.name) }, 'leadership confirmed: leader-only tasks start');
    for (const task of this.#o.tasks) this.#track(this.#runTask(task, ctx));
  }

  async #runTask(task: LeaderTask, ctx: LeaderContext): Promise<void> {
    while (!ctx.signal.aborted) {
      try {
        await task.run(ctx);
        if (!ctx.signal.aborted) this.#log.warn({ task: task.name, term: ctx.term }, 'leader task returned while still leading; restarting it');
      } catch (err) {
        if (ctx.signal.aborted) return;
        // Leadership slipping away under a task (a proposal or barrier refused) is routine: the
        // host stops it the moment the driver says so. Anything else is a failure worth a line.
        if (isDfsError(err, 'ERR_NOT_LEADER') || isDfsError(err, 'ERR_TIMEOUT')) {
          this.#log.info({ task: task.name, term: ctx.term, err: (err as Error).message }, 'leader task interrupted (leadership moving?); restarting it');
        } else {
          this.#log.error({ task: task.name, term: ctx.term, err: (err as Error).message }, 'leader task failed; restarting it');
        }
      }
      try {
        await ctx.sleep(this.#o.restartDelayMs ?? 1_000);
      } catch {
        return;
      }
    }
  }

  #context(leadership: Leadership): LeaderContext {
    const { driver } = this.#o;
    const signal = leadership.controller.signal;
    const lost = () => (signal.reason instanceof DfsError ? signal.reason : new DfsError('ERR_NOT_LEADER', `no longer the leader of term ${leadership.term}`));
    return {
      term: leadership.term,
      signal,
      confirm: async () => {
        if (signal.aborted) throw lost();
        // The barrier races the leadership: a task waiting here ends the moment it is lost, even
        // if the driver never answers (stopped or failed mid-Ready), so stop() always returns.
        await new Promise<void>((resolve, reject) => {
          const onAbort = () => reject(lost());
          signal.addEventListener('abort', onAbort, { once: true });
          driver.readBarrier().then(
            () => {
              signal.removeEventListener('abort', onAbort);
              resolve();
            },
            (err: unknown) => {
              signal.removeEventListener('abort', onAbort);
              reject(err);
            },
          );
        });
        if (signal.aborted || driver.role !== 'leader' || driver.term !== leadership.term) throw lost();
      },
      leading: () => !signal.aborted && driver.role === 'leader' && driver.term === leadership.term,
      sleep: (ms) =>
        new Promise<void>((resolve, reject) => {
          if (signal.aborted) return reject(lost());
          const onAbort = () => {
            timer.cancel();
            reject(lost());
          };
          const timer = this.#clock.setTimeout(() => {
            signal.removeEventListener('abort', onAbort);
            resolve();
          }, ms);
          signal.addEventListener('abort', onAbort, { once: true });
        }),
    };
  }

  #track(p: Promise<void>): void {
    this.#running.add(p);
    void p.finally(() => this.#running.delete(p));
  }
}
