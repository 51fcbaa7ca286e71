import { createWriteStream, type WriteStream } from 'node:fs';
import type { Operation } from '../support/linearizability.ts';
import type { FsInput, FsOutput } from '../support/linearizability-models.ts';

export type OpKind = 'put' | 'create' | 'get' | 'stat' | 'rm' | 'mv';

/**
 * How an operation ended:
 * - ok: the cluster answered (`output` is the answer: 'ok', 'exists', 'not_found', or a read's content);
 * - error: it failed and certainly changed nothing (a refusal, or a put that failed before its commit);
 * - indeterminate: the client never learned whether it took effect (a timeout, a lost leader).
 */
export type Outcome = 'ok' | 'error' | 'indeterminate';

export interface OpRecord {
  readonly id: number;
  readonly client: string;
  readonly op: OpKind;
  readonly path: string;
  /** mv's destination. */
  readonly to?: string;
  /** put/create: the content written (short key). */
  readonly content?: string;
  readonly size?: number;
  /** Milliseconds from the start of the run. */
  readonly call: number;
  /** null for an indeterminate operation. */
  readonly return: number | null;
  readonly outcome: Outcome;
  /** ok: the answer; a read's content is a short key, or null for "no such file". */
  readonly output?: string | null;
  readonly code?: string;
  readonly message?: string;
  /** One of the reads after the faults healed. */
  readonly final?: boolean;
  /** For a read that found no good copy of a chunk: what the leader and the disks said right after. */
  readonly evidence?: string;
}

/**
 * The history of a run, as JSON lines: every operation with its outcome, every fault as it is
 * injected and healed, and the checks. Kept in memory too, for the linearizability check.
 */
export class History {
  readonly ops: OpRecord[] = [];
  readonly #out: WriteStream;
  readonly #t0 = performance.now();
  #nextId = 0;
  readonly file: string;

  constructor(file: string) {
    this.file = file;
    this.#out = createWriteStream(file);
  }

  /** Where the load phase started (console times count from there). */
  loadStartMs = 0;

  /** Milliseconds since the run started (a monotonic clock). */
  now(): number {
    return performance.now() - this.#t0;
  }

  /** A time of this history as the console shows it: seconds into the load phase. */
  at(ms: number = this.now()): string {
    return `${((ms - this.loadStartMs) / 1000).toFixed(1)} s`;
  }

  nextId(): number {
    return this.#nextId++;
  }

  op(record: OpRecord): void {
    this.ops.push(record);
    this.#write({ type: 'op', ...record });
  }

  event(type: string, fields: Record<string, unknown>): void {
    this.#write({ type, t: Math.round(this.now()), ...fields });
  }

  #write(value: object): void {
    this.#out.write(JSON.stringify(value) + '\n');
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#out.end(() => resolve()));
  }
}

/**
 * The operations the linearizability checker sees: answered ones as they are, indeterminate ones
 * open-ended, and those that certainly changed nothing left out (they constrain nothing).
 */
export function modelOperations(records: readonly OpRecord[]): Array<Operation<FsInput, FsOutput> & { record: OpRecord }> {
  const out: Array<Operation<FsInput, FsOutput> & { record: OpRecord }> = [];
  for (const r of records) {
    if (r.outcome === 'error') continue;
    const input = inputOf(r);
    if (r.outcome === 'indeterminate') {
      // A read that never answered says nothing.
      if (r.op === 'get' || r.op === 'stat') continue;
      out.push({ clientId: r.client, input, call: r.call, output: undefined, return: Infinity, record: r });
    } else {
      out.push({ clientId: r.client, input, call: r.call, output: r.output ?? null, return: r.return!, record: r });
    }
  }
  return out;
}

export function inputOf(r: OpRecord): FsInput {
  switch (r.op) {
    case 'put':
    case 'create':
      return { op: r.op, path: r.path, content: r.content! };
    case 'get':
    case 'stat':
      return { op: 'stat', path: r.path };
    case 'rm':
      return { op: 'rm', path: r.path };
    case 'mv':
      return { op: 'mv', from: r.path, to: r.to! };
  }
}
