import { randomBytes } from 'node:crypto';
import { DfsError, isDfsError } from '../errors/index.ts';
import { type ApplyResult, type MetaEnvelope, MetaState, type SnapshotRecord } from '../meta/index.ts';
import { parseEnvelope } from '../meta/envelope.ts';
import { SnapshotRecordChecker } from '../meta/state.ts';
import type { ReplicatedStateMachine } from './raft-driver.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Snapshot bytes from a peer or a disk must be valid UTF-8: no silent U+FFFD. */
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

export function encodeEnvelope(envelope: MetaEnvelope): Uint8Array {
  return encoder.encode(JSON.stringify(envelope));
}

/**
 * snapshot(), restore() and validateSnapshot() let the event loop run (one `pause`) after about
 * this much serialised or parsed text, or RECORDS_PER_TURN records, whichever comes first.
 */
const BYTES_PER_TURN = 1024 * 1024;
const RECORDS_PER_TURN = 2_000;
/** A file's chunk list is serialised this many chunks at a time (~600 KB of JSON). */
const CHUNKS_PER_SLICE = 8_192;
/** Serialised text is encoded to bytes in pieces of about this many characters. */
const PIECE_CHARS = 1024 * 1024;
/** The final copy of the pieces into one buffer pauses after this many bytes. */
const COPY_BYTES_PER_TURN = 16 * 1024 * 1024;

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
      return isDfsError(err) ? { ok: false, code: err.code, message: err.message } : { ok: false, code: 'ERR_PROTOCOL', message: String((err as Error).message) };
    }
    return this.#state.apply(index, envelope);
  }

  /**
   * The state as newline-delimited JSON records (see MetaState.snapshotRecords), exactly
   * `records.map(JSON.stringify).join('\n')`, produced a slice at a time so that a large state
   * does not stall the event loop: about 1 MB of JSON per turn, a large manifest's chunk list
   * in slices of 8,192 chunks; the text is encoded in ~1 MB pieces, copied into one buffer at the
   * end (16 MiB per turn). The state is captured when this is called (captureSnapshot), so applies go on meanwhile.
   */
  async snapshot(): Promise<Uint8Array> {
    // Captured now, synchronously: applies may go on while the copy is serialised.
    const records = this.#state.captureSnapshot();
    const { pieces, bytes } = await serialiseSnapshot(records(), this.#pause);
    return concatPieces(pieces, bytes, this.#pause);
  }

  /**
   * Replaces the state with the snapshot's. The bytes are not trusted: every record is checked
   * (SnapshotRecordChecker) while the new state is built aside, so a snapshot that is not valid
   * (not UTF-8, not JSON, an unknown or malformed record, out of order) throws ERR_IO and leaves
   * the current state as it was.
   */
  async restore(data: Uint8Array): Promise<void> {
    if (data.length === 0) {
      this.#state = new MetaState();
      return;
    }
    this.#state = await MetaState.restore(checkedRecords(data, this.#pause));
  }
}

/**
 * Checks that `data` is a valid metadata snapshot (as MetaMachine.restore would accept) without
 * building any state; throws ERR_IO saying what is wrong. Empty data is the empty state. Yields
 * to the event loop (`pause`) about every 1 MB of input.
 */
export async function validateSnapshotData(data: Uint8Array, pause: () => Promise<void> = nextTurn): Promise<void> {
  if (data.length === 0) return;
  for await (const _ of checkedRecords(data, pause));
}

/** The snapshot's records, parsed and checked one line at a time; throws ERR_IO on the first bad one. */
async function* checkedRecords(data: Uint8Array, pause: () => Promise<void>): AsyncGenerator<SnapshotRecord> {
  const checker = new SnapshotRecordChecker();
  let sinceTurn = 0;
  let records = 0;
  for (let pos = 0; pos < data.length; ) {
    let end = data.indexOf(10, pos);
    if (end < 0) end = data.length;
    if (end > pos) {
      let value: unknown;
      try {
        value = JSON.parse(strictDecoder.decode(data.subarray(pos, end)));
      } catch (err) {
        throw new DfsError('ERR_IO', `invalid metadata snapshot: record ${records} at byte ${pos} is not JSON: ${(err as Error).message}`);
      }
      records++;
      yield checker.check(value);
    }
    sinceTurn += end + 1 - pos;
    pos = end + 1;
    if (sinceTurn >= BYTES_PER_TURN) {
      sinceTurn = 0;
      await pause();
    }
  }
  checker.finish();
}

/** Serialises records into ~1 MB UTF-8 pieces (see MetaMachine.snapshot). */
async function serialiseSnapshot(records: Iterable<SnapshotRecord>, pause: () => Promise<void>): Promise<{ pieces: Uint8Array[]; bytes: number }> {
  const pieces: Uint8Array[] = [];
  let bytes = 0;
  let text: string[] = [];
  let textChars = 0;
  let sinceTurn = 0;
  let recordsSinceTurn = 0;
  const push = (s: string): void => {
    text.push(s);
    textChars += s.length;
    sinceTurn += s.length;
    if (textChars >= PIECE_CHARS) flush();
  };
  const flush = (): void => {
    if (text.length === 0) return;
    const piece = encoder.encode(text.join(''));
    pieces.push(piece);
    bytes += piece.length;
    text = [];
    textChars = 0;
  };
  const maybePause = async (): Promise<void> => {
    if (sinceTurn >= BYTES_PER_TURN || recordsSinceTurn >= RECORDS_PER_TURN) {
      sinceTurn = 0;
      recordsSinceTurn = 0;
      await pause();
    }
  };
  // A string no path, owner or id can contain, standing in for a large chunk list.
  const placeholder = `\u0001dfs-chunks-${randomBytes(8).toString('hex')}`;
  const quoted = JSON.stringify(placeholder);
  let first = true;
  for (const r of records) {
    if (!first) push('\n');
    first = false;
    recordsSinceTurn++;
    const chunks = r.t === 'entry' && r.entry.kind === 'file' ? r.entry.manifest.chunks : undefined;
    if (chunks === undefined || chunks.length <= CHUNKS_PER_SLICE) {
      push(JSON.stringify(r));
    } else {
      // JSON.stringify(r), with the chunk list written a slice per turn.
      const outline = JSON.stringify(r, (_key, value: unknown) => (value === chunks ? placeholder : value));
      const at = outline.indexOf(quoted);
      if (at < 0) throw new Error('snapshot: chunk list placeholder not found');
      push(`${outline.slice(0, at)}[`);
      for (let i = 0; i < chunks.length; i += CHUNKS_PER_SLICE) {
        const slice = JSON.stringify(chunks.slice(i, i + CHUNKS_PER_SLICE));
        push(i === 0 ? slice.slice(1, -1) : `,${slice.slice(1, -1)}`);
        await maybePause();
      }
      push(`]${outline.slice(at + quoted.length)}`);
    }
    await maybePause();
  }
  flush();
  return { pieces, bytes };
}

async function concatPieces(pieces: Uint8Array[], bytes: number, pause: () => Promise<void>): Promise<Uint8Array> {
  if (pieces.length === 1) return pieces[0]!;
  const out = new Uint8Array(bytes);
  let offset = 0;
  let sinceTurn = 0;
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!;
    out.set(piece, offset);
    offset += piece.length;
    sinceTurn += piece.length;
    pieces[i] = EMPTY; // its memory can go now
    if (sinceTurn >= COPY_BYTES_PER_TURN && i < pieces.length - 1) {
      sinceTurn = 0;
      await pause();
    }
  }
  return out;
}

const EMPTY = new Uint8Array(0);

/** A log entry's bytes as an envelope, checked whole by the one envelope schema (src/meta/envelope.ts). */
function decodeEnvelope(data: Uint8Array): MetaEnvelope {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(data));
  } catch (err) {
    throw new DfsError('ERR_PROTOCOL', `log entry is not JSON: ${(err as Error).message}`);
  }
  return parseEnvelope(value);
}
