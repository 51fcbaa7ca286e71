import { DfsError } from '../errors/index.ts';
import { type ApplyResult, type MetaEnvelope, MetaState, type SnapshotRecord } from '../meta/index.ts';
import type { ReplicatedStateMachine } from './raft-driver.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeEnvelope(envelope: MetaEnvelope): Uint8Array {
  return encoder.encode(JSON.stringify(envelope));
}

/** How often snapshot() lets the event loop run: every this many records. */
const RECORDS_PER_TURN = 2_000;

/** One event-loop turn (timers and I/O run), the production `pause`. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export interface MetaMachineOptions {
  /** Lets other work run during a long snapshot; the simulator passes its own. */
  readonly pause?: () => Promise<void>;
}

/** The metadata state machine as the Raft driver sees it: bytes in, results out. */
export class MetaMachine implements ReplicatedStateMachine {
  #state = new MetaState();
  readonly #pause: () => Promise<void>;

  constructor(options: MetaMachineOptions = {}) {
    this.#pause = options.pause ?? nextTurn;
  }

  get state(): MetaState {
    return this.#state;
  }

  apply(index: number, data: Uint8Array): ApplyResult {
    let envelope: MetaEnvelope;
    try {
      envelope = decodeEnvelope(data);
    } catch (err) {
      // Deterministic on every master: the same bytes fail the same way.
      return { ok: false, code: 'ERR_PROTOCOL', message: (err as Error).message };
    }
    return this.#state.apply(index, envelope);
  }

  /**
   * The state as newline-delimited JSON records (see MetaState.snapshotRecords), serialised a
   * slice at a time so a large state does not stall the event loop: the driver applies nothing
   * meanwhile, so the records come from one state.
   */
  async snapshot(): Promise<Uint8Array> {
    const lines: string[] = [];
    for (const r of this.#state.snapshotRecords()) {
      lines.push(JSON.stringify(r));
      if (lines.length % RECORDS_PER_TURN === 0) await this.#pause();
    }
    return encoder.encode(lines.join('\n'));
  }

  async restore(data: Uint8Array): Promise<void> {
    if (data.length === 0) {
      this.#state = new MetaState();
      return;
    }
    const text = decoder.decode(data);
    this.#state = await MetaState.restore(
      (function* () {
        for (const line of text.split('\n')) if (line.length > 0) yield JSON.parse(line) as SnapshotRecord;
      })(),
    );
  }
}

function decodeEnvelope(data: Uint8Array): MetaEnvelope {
  const value = JSON.parse(decoder.decode(data)) as Partial<MetaEnvelope>;
  if (typeof value !== 'object' || value === null) throw new DfsError('ERR_PROTOCOL', 'log entry is not an object');
  if (typeof value.clientId !== 'string' || !Number.isSafeInteger(value.seq) || typeof value.cmd !== 'object' || value.cmd === null) {
    throw new DfsError('ERR_PROTOCOL', 'log entry is not a {clientId, seq, cmd} envelope');
  }
  return value as MetaEnvelope;
}
