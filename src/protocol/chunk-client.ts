import type { Uint8ArrayList } from 'uint8arraylist';
import { assertChunkId, loadBlake3 } from '../chunker/index.ts';
import type { Blake3, ChunkId } from '../chunker/index.ts';
import { MAX_TICKET_CHARS, MAX_TICKET_IDS } from '../auth/tickets.ts';
import { DfsError } from '../errors/index.ts';
import { decodeJson, deadlineSignal, errorFromAbort, FrameReader, FrameWriter, peerIdInAddr, raceAbort, requestOnStream } from '../net/index.ts';
import { streamClosedError } from '../net/framing.ts';
import type { DfsPeer, Schema, Stream } from '../net/index.ts';
import {
  BATCH_MAX_IDS,
  CHUNK_FRAME_MAX_BYTES,
  CHUNK_MAX_BYTES,
  CHUNK_PROTOCOL,
  ChunkTargetError,
  deleteAnswerSchema,
  encodeHeader,
  getAnswerSchema,
  hasAnswerSchema,
  parseAnswer,
  PIPELINE_MAX_TARGETS,
  payloadFrames,
  putAnswerSchema,
} from './chunk-protocol.ts';
import type { PutAnswer } from './chunk-protocol.ts';
import { checkReceipts, ReceiptCheckError } from '../net/receipt.ts';
import type { Receipt } from '../net/receipt.ts';
// Not the folder's index: that would load LevelDB into every client.
import { isFence } from '../storage/delete-fences.ts';

/**
 * The client side of `/dfs/chunk/1.0.0` (see src/node/chunk-protocol.ts): put a chunk through a
 * replication pipeline, get (a range of) it, ask which chunks a node has, delete chunks.
 */

export interface ChunkCallOptions {
  /** Bound on the whole operation: connect, send, wait, receive. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface GetChunkOptions extends ChunkCallOptions {
  readonly offset?: number;
  readonly length?: number;
  /** To verify a whole-chunk get against its id; loaded on first use when absent. */
  readonly blake3?: Blake3;
}

/** A session get: a whole chunk, optionally copied into a buffer of the caller's. */
export interface SessionGetOptions extends Omit<GetChunkOptions, 'offset' | 'length'> {
  /**
   * Where to put the bytes: called once with the chunk's size, returns a buffer of at least that
   * many bytes, into which the received frames are copied as they arrive (so the transport's
   * buffers die young and a caller can reuse its buffers). The chunk then comes back as one
   * piece, a view of it. Default: the received buffers themselves, as they arrived.
   */
  readonly into?: (size: number) => Uint8Array;
}

/** Default bound on a put: a base plus a share per pipeline target (each may fsync 64 MiB). */
const PUT_TIMEOUT_BASE_MS = 30_000;
const PUT_TIMEOUT_PER_TARGET_MS = 15_000;
const DEFAULT_GET_TIMEOUT_MS = 60_000;
const DEFAULT_QUERY_TIMEOUT_MS = 10_000;

/** What a put resolves with: who stored the chunk, and each one's own signed proof of it. */
export interface PutChunkResult {
  /** The peer ids of the pipeline, in order: every one holds the chunk durably. */
  readonly stored: string[];
  /** One receipt per node of `stored`, in the same order, each checked against its peer id. */
  readonly receipts: Receipt[];
}

/**
 * Stores `data` under `id` on every node of `pipeline` (multiaddrs ending /p2p/<id>; the first is
 * dialled and gets the bytes, the others travel as peer ids: each node forwards to the next at
 * the address its node list from the masters gives). Resolves only once every node has it
 * durably, with the peer ids that stored it and their receipts (src/net/receipt.ts), which this
 * function has checked itself: `stored` is exactly the pipeline, each with a valid signature of
 * its own over (id, fence). `fence` is the one the leader
 * issued with the placement (a safe integer >= 0): every node records it, so a GC delete decided
 * before it cannot remove the chunk this put acknowledges (see src/storage/delete-fences.ts).
 *
 * Fails with a DfsError: ERR_CHUNK_CORRUPT (the bytes do not hash to `id`; no node stored them),
 * ERR_INVALID_ARGUMENT (a bad pipeline or fence, before any I/O), or a ChunkTargetError naming
 * `failedTarget`: ERR_PIPELINE when a later node failed (the nodes
 * before it kept their copies; retry with another target there; `failedTarget` may be
 * `/p2p/<peer id>` when the node before had no address for it), otherwise the first node's own
 * refusal or failure (ERR_OVERLOADED, ERR_NO_SPACE, ERR_CHUNK_TOO_LARGE, ERR_PEER_UNREACHABLE,
 * ERR_TIMEOUT, ERR_STREAM_CLOSED, ERR_PROTOCOL...). An answer whose `stored` is not the pipeline
 * or that lacks a valid receipt from any node of it is ERR_PROTOCOL naming the first node: it
 * vouched for the answer (a ReceiptError, whose `suspects` are the nodes up to the one whose
 * proof failed: forwarding nodes check the shape of their downstream's answer, not signatures).
 * ERR_ABORTED when `signal` fired. With a
 * `pool`, the put borrows a stream an earlier put to the same node left open (ChunkStreams).
 *
 * `ticket`: the masters' permission for this put (op 'put' from the placement, bearer this peer,
 * the placement's fence; or op 'replicate' for a copy the leader ordered), sent to the first node
 * and forwarded unchanged down the pipeline. A node refuses a put without a good one:
 * ERR_UNAUTHENTICATED, ERR_TOKEN_EXPIRED (ask for a new placement), ERR_FORBIDDEN.
 */
export async function putChunk(
  peer: DfsPeer,
  pipeline: readonly string[],
  id: ChunkId,
  data: Uint8Array | readonly Uint8Array[],
  fence: number,
  ticket: string,
  options: ChunkCallOptions & { readonly pool?: ChunkStreams } = {},
): Promise<PutChunkResult> {
  assertChunkId(id);
  assertFenceArgument(fence);
  assertTicketArgument(ticket);
  const target = pipeline[0];
  if (target === undefined || pipeline.length > PIPELINE_MAX_TARGETS + 1) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `a put pipeline has 1 to ${PIPELINE_MAX_TARGETS + 1} targets, got ${pipeline.length}`);
  }
  const nodes = pipeline.map((addr) => {
    const node = peerIdInAddr(addr);
    if (node === undefined) throw new DfsError('ERR_INVALID_ARGUMENT', `pipeline target ${addr} does not name its peer (/p2p/<id>)`);
    return node;
  });
  if (new Set(nodes).size !== nodes.length) throw new DfsError('ERR_INVALID_ARGUMENT', `a put pipeline names a node twice: ${nodes.join(', ')}`);
  const pieces = data instanceof Uint8Array ? [data] : data;
  const size = pieces.reduce((n, p) => n + p.byteLength, 0);
  if (size > CHUNK_MAX_BYTES) throw new DfsError('ERR_CHUNK_TOO_LARGE', `chunk ${id} has ${size} bytes; the limit is ${CHUNK_MAX_BYTES}`);
  const signal = deadlineSignal(options.timeoutMs ?? PUT_TIMEOUT_BASE_MS + PUT_TIMEOUT_PER_TARGET_MS * pipeline.length, options.signal);
  let put: OutboundPut | undefined;
  try {
    put = await OutboundPut.open(peer, target, { id, size, fence, pipeline: nodes.slice(1), ticket }, { signal, ...(options.pool ? { pool: options.pool } : {}) });
    for (const frame of payloadFrames(pieces)) await put.write(frame, signal);
    const answer = await put.finish(signal); // its stored list and receipts checked
    return { stored: answer.stored, receipts: answer.receipts };
  } catch (err) {
    put?.abort(err);
    const bad = err instanceof DfsError && err.cause instanceof ReceiptCheckError ? nodes.indexOf(err.cause.node) : -1;
    if (bad >= 0) throw new ReceiptError((err as DfsError).message, target, pipeline.slice(0, bad + 1));
    throw blameTarget(err, target);
  }
}

/**
 * An ack without every node's valid receipt: ERR_PROTOCOL naming the first node, which vouched
 * for the answer. Forwarding nodes check only the shape of their downstream's answer (see
 * OutboundPutOptions.verifyReceipts), so a bad signature of a later node may be that node's, or
 * a node's between it and us: `suspects` are the pipeline's addresses up to the node whose proof
 * failed, for a retry to avoid.
 */
export class ReceiptError extends ChunkTargetError {
  readonly suspects: readonly string[];

  constructor(message: string, failedTarget: string, suspects: readonly string[]) {
    super('ERR_PROTOCOL', message, failedTarget);
    this.name = 'ReceiptError';
    this.suspects = suspects;
  }
}

/** Which error a put's caller sees: who failed, unless it was the data or the caller itself. */
function blameTarget(err: unknown, target: string): DfsError {
  if (err instanceof ChunkTargetError) return err;
  const dfs = err instanceof DfsError ? err : new DfsError('ERR_INTERNAL', `put to ${target}: ${String(err)}`, { cause: err });
  if (dfs.code === 'ERR_CHUNK_CORRUPT' || dfs.code === 'ERR_ABORTED' || dfs.code === 'ERR_INVALID_ARGUMENT' || dfs.code === 'ERR_INVALID_CHUNK_ID') return dfs;
  return new ChunkTargetError(dfs.code, dfs.message, target, { cause: dfs });
}

export interface PutHeader {
  readonly id: ChunkId;
  readonly size: number;
  /** The leader's fence for this put, forwarded unchanged down the pipeline. */
  readonly fence: number;
  /** Peer ids of the nodes after the target, in order. */
  readonly pipeline: readonly string[];
  /** The put's chunk ticket (the first hop's, forwarded unchanged). */
  readonly ticket: string;
}

/** Refuses a ticket the wire would refuse, before any I/O (a bad one is for the node to refuse). */
function assertTicketArgument(ticket: string): void {
  if (typeof ticket !== 'string' || ticket.length > MAX_TICKET_CHARS) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `a chunk ticket is a string of at most ${MAX_TICKET_CHARS} characters`);
  }
}

/** Refuses a fence the wire would refuse, before any I/O. */
function assertFenceArgument(fence: number): void {
  if (!isFence(fence)) throw new DfsError('ERR_INVALID_ARGUMENT', `a fence must be a safe integer >= 0, got ${String(fence)}`);
}

/**
 * One outbound put: the header is sent at open, payload frames with `write` (each waits for the
 * stream to take it: backpressure), and `finish` ends the payload and waits for the answer. The
 * answer may come early (a refusal while we still write): from then on writes fail with that
 * refusal instead of waiting. Used by putChunk and by a node forwarding down a pipeline. Every
 * path ends in `finish` or `abort`. `finish` accepts an ack only with proof: its `stored` must be
 * the target and the header's pipeline, in order, each with a valid receipt (else ERR_PROTOCOL),
 * and it returns exactly those receipts, in that order.
 *
 * On a stream of its own, `finish` ends the payload by closing the write side. With a
 * `ChunkStreams` pool, the put borrows an idle stream to its target (or opens one), ends the
 * payload with an end frame, and gives the stream back after a good answer, so a chunk does not
 * pay a stream's setup; a stream that failed is reset, never given back. A borrowed stream may
 * have been reset by the target while idle (it resets quiet streams), which is no failure of the
 * target: when a write or the finish fails only because the stream was closed, before any
 * answer, the put opens a new stream and sends the header and every frame written so far again
 * (kept, not copied, until then), once. Not after `abort`: an aborted put never sends again.
 */
export class OutboundPut {
  readonly target: string;
  readonly #peer: DfsPeer;
  readonly #header: Uint8Array;
  readonly #id: ChunkId;
  readonly #fence: number;
  /** The peer ids an ack must name and prove: the target, then the header's pipeline. */
  readonly #expected: readonly string[];
  readonly #pool: ChunkStreams | undefined;
  readonly #dialTimeoutMs: number | undefined;
  readonly #verifyReceipts: boolean;
  #conn: ChunkStream;
  /** Payload frames written on a borrowed stream, for a resend on a new one; undefined once none can happen. */
  #written: Array<Uint8Array | Uint8ArrayList> | undefined;
  /** The answer header frame (read from the start: a refusal can come before we finish). */
  #answer!: Promise<Uint8ArrayList | undefined>;
  /** Fires when the answer arrived or reading it failed: writes stop waiting then. */
  #answered!: AbortController;
  /** Sending the header (started with the stream): writes and finish wait for it, and fail with it. */
  #headerSent!: Promise<void>;
  #done = false;

  private constructor(peer: DfsPeer, target: string, targetId: string, header: PutHeader, options: OutboundPutOptions, conn: ChunkStream, borrowed: boolean) {
    this.target = target;
    this.#peer = peer;
    this.#id = header.id;
    this.#fence = header.fence;
    this.#expected = [targetId, ...header.pipeline];
    this.#header = encodeHeader({ op: 'put', id: header.id, size: header.size, fence: header.fence, pipeline: header.pipeline, ticket: header.ticket });
    this.#pool = options.pool;
    this.#dialTimeoutMs = options.timeoutMs;
    this.#verifyReceipts = options.verifyReceipts ?? true;
    this.#written = borrowed ? [] : undefined;
    this.#conn = conn;
    this.#start(options.signal);
  }

  /**
   * Opens (or, with `pool`, borrows) a stream and starts sending the header. Fails like
   * DfsPeer.dialProtocol; a failure to send the header comes from the first `write` or `finish`.
   */
  static async open(peer: DfsPeer, target: string, header: PutHeader, options: OutboundPutOptions): Promise<OutboundPut> {
    assertFenceArgument(header.fence);
    assertTicketArgument(header.ticket);
    const targetId = peerIdInAddr(target);
    if (targetId === undefined) throw new DfsError('ERR_INVALID_ARGUMENT', `put target ${target} does not name its peer (/p2p/<id>)`);
    const borrowed = options.pool?.take(target);
    const conn = borrowed ?? (await dialChunkStream(peer, target, options.signal, options.timeoutMs));
    return new OutboundPut(peer, target, targetId, header, options, conn, borrowed !== undefined);
  }

  /** Starts reading the answer and sending the header on the current stream. */
  #start(signal: AbortSignal): void {
    const answered = new AbortController();
    const onAnswer = (): void => answered.abort(new DfsError('ERR_STREAM_CLOSED', `${this.target} answered the put before it was finished`));
    this.#answered = answered;
    this.#answer = this.#conn.reader.read();
    this.#answer.then(onAnswer, onAnswer);
    this.#headerSent = this.#send(this.#header, signal);
    this.#headerSent.catch(() => {}); // observed by the first write or finish
  }

  /** Sends one payload frame (1 byte to 1 MiB). Rejects with the target's refusal if it answered. */
  async write(payload: Uint8Array | Uint8ArrayList, signal: AbortSignal): Promise<void> {
    await this.#onStream(() => this.#send(payload, signal), signal);
    this.#written?.push(payload);
  }

  /** Ends the payload and waits (bounded by `signal`) for the answer: the ack, or its refusal thrown. */
  async finish(signal: AbortSignal): Promise<PutAnswer> {
    const frame = await this.#onStream(async () => {
      try {
        const until = { signal: AbortSignal.any([signal, this.#answered.signal]) };
        if (this.#pool) await this.#conn.writer.write(END_OF_PAYLOAD, until);
        else await this.#conn.writer.close(until);
      } catch (err) {
        if (!this.#answered.signal.aborted) throw await this.#failure(err, signal);
      }
      return raceAbort(this.#answer, signal, `waiting for ${this.target} to store the chunk`);
    }, signal);
    try {
      if (frame === undefined) throw new DfsError('ERR_PROTOCOL', `${this.target} closed the put stream without answering`);
      const parsed = parseAnswer(decodeJson(frame), putAnswerSchema);
      // An ack counts only with every node's own proof (a rogue target cannot vouch for others);
      // a forwarding node checks only its shape (OutboundPutOptions.verifyReceipts).
      const receipts = await checkReceipts(this.#id, this.#fence, this.#expected, parsed, { verify: this.#verifyReceipts }).catch((err: unknown) => {
        throw new DfsError('ERR_PROTOCOL', `${this.target} acknowledged without proof: ${(err as Error).message}`, { cause: err });
      });
      const answer: PutAnswer = { ...parsed, receipts };
      this.#done = true;
      if (this.#pool) this.#pool.give(this.target, this.#conn);
      else this.#conn.reader.release();
      return answer;
    } catch (err) {
      this.#release(err);
      throw err;
    }
  }

  /** Resets the stream (the target never stores what it got). Idempotent. */
  abort(reason?: unknown): void {
    this.#release(reason ?? new DfsError('ERR_ABORTED', 'put aborted'));
  }

  /**
   * Runs `op` (after the header went); when it fails only because a borrowed stream had been
   * reset, runs it once more on a new stream carrying the header and the frames written so far.
   * Any other failure resets the stream and is thrown.
   */
  async #onStream<T>(op: () => Promise<T>, signal: AbortSignal): Promise<T> {
    try {
      await this.#headerSent;
      return await op();
    } catch (err) {
      const failure = err instanceof DfsError ? err : streamClosedError(this.#conn.stream, err);
      const resend = this.#written !== undefined && !this.#done && !signal.aborted && failure.code === 'ERR_STREAM_CLOSED';
      if (!resend) {
        this.#release(failure);
        throw failure;
      }
    }
    const written = this.#written!;
    this.#written = undefined; // once
    const reset = this.#conn;
    reset.reader.release();
    if (reset.stream.status === 'open') reset.stream.abort(new DfsError('ERR_STREAM_CLOSED', `resending the put to ${this.target}`));
    try {
      const conn = await dialChunkStream(this.#peer, this.target, signal, this.#dialTimeoutMs);
      if (this.#done) {
        // Aborted while the new stream was opening: it goes too.
        conn.stream.abort(new DfsError('ERR_ABORTED', `put to ${this.target} aborted`));
        throw new DfsError('ERR_ABORTED', `put to ${this.target} aborted`);
      }
      this.#conn = conn;
      this.#start(signal);
      await this.#headerSent;
      for (const frame of written) await this.#send(frame, signal);
      return await op();
    } catch (err) {
      this.#release(err);
      throw err;
    }
  }

  async #send(payload: Uint8Array | Uint8ArrayList, signal: AbortSignal): Promise<void> {
    try {
      await this.#conn.writer.write(payload, { signal: AbortSignal.any([signal, this.#answered.signal]) });
    } catch (err) {
      throw await this.#failure(err, signal);
    }
  }

  #release(failure: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#answer.catch(() => {});
    this.#conn.reader.release();
    if (failure !== undefined && this.#conn.stream.status === 'open') {
      this.#conn.stream.abort(failure instanceof Error ? failure : new Error(String(failure)));
    }
  }

  /**
   * The error for a failed write: the target's refusal when it answered (it says more than
   * "stream reset"), else the write error itself.
   */
  async #failure(err: unknown, signal: AbortSignal): Promise<DfsError> {
    if (signal.aborted) return errorFromAbort(signal, `putting to ${this.target}`);
    const failure: DfsError = err instanceof DfsError ? err : streamClosedError(this.#conn.stream, err);
    if (!this.#answered.signal.aborted) return failure;
    try {
      const frame = await this.#answer;
      if (frame !== undefined) {
        parseAnswer(decodeJson(frame), putAnswerSchema);
        return new DfsError('ERR_PROTOCOL', `${this.target} acknowledged a put before its payload was complete`);
      }
    } catch (answerError) {
      if (answerError instanceof DfsError && answerError.code !== 'ERR_STREAM_CLOSED') return answerError;
    }
    return failure;
  }
}

export interface OutboundPutOptions {
  /** Bounds opening the stream (and sending the header). */
  readonly signal: AbortSignal;
  /** Bound on dialing the target. */
  readonly timeoutMs?: number;
  /** Streams kept between puts: borrow one, give it back after a good answer. */
  readonly pool?: ChunkStreams;
  /**
   * Check every receipt's signature in the answer (default true). False checks its shape only:
   * `stored` is exactly the pipeline, with a receipt from each node (see checkReceipts).
   */
  readonly verifyReceipts?: boolean;
}

/** Ends a put's payload on a stream that stays open for the next put. */
const END_OF_PAYLOAD = new Uint8Array(0);

/**
 * The bytes of chunk `id` (or of `length` bytes from `offset`) from the node at `addr`. A whole
 * chunk is verified here against its id (end to end: a mismatch is ERR_CHUNK_CORRUPT); a range is
 * cut by the node from a copy it verified. Fails with ERR_CHUNK_NOT_FOUND, ERR_CHUNK_CORRUPT (the
 * node's copy is bad), ERR_INVALID_ARGUMENT (range outside the chunk), ERR_OVERLOADED, or a
 * network error (ERR_PEER_UNREACHABLE, ERR_TIMEOUT, ERR_STREAM_CLOSED, ERR_PROTOCOL). `ticket`:
 * the masters' get ticket for the chunk (from a locate answer, bearer this peer); without a good
 * one, ERR_UNAUTHENTICATED, ERR_TOKEN_EXPIRED or ERR_FORBIDDEN.
 */
export async function getChunk(peer: DfsPeer, addr: string, id: ChunkId, ticket: string, options: GetChunkOptions = {}): Promise<Uint8Array> {
  assertChunkId(id);
  assertTicketArgument(ticket);
  const { offset, length } = options;
  for (const [name, value] of [['offset', offset], ['length', length]] as const) {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
      throw new DfsError('ERR_INVALID_ARGUMENT', `${name} must be a non-negative integer, got ${value}`);
    }
  }
  const whole = offset === undefined && length === undefined;
  const blake3 = whole ? (options.blake3 ?? (await loadBlake3())) : undefined;
  const signal = deadlineSignal(options.timeoutMs ?? DEFAULT_GET_TIMEOUT_MS, options.signal);
  const request = { op: 'get', id, ...(offset === undefined ? {} : { offset }), ...(length === undefined ? {} : { length }), ticket };
  return withStream(peer, addr, request, signal, async (header, reader) => {
    const pieces = await receiveChunk(header, reader, { addr, id, length, blake3, into: undefined, signal });
    if ((await reader.read({ signal })) !== undefined) throw new DfsError('ERR_PROTOCOL', `${addr} sent more than the announced chunk`);
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  });
}

interface ReceiveOptions {
  readonly addr: string;
  readonly id: ChunkId;
  readonly length: number | undefined;
  readonly blake3: Blake3 | undefined;
  readonly into: ((size: number) => Uint8Array) | undefined;
  readonly signal: AbortSignal;
}

/** A get's answer (`header`) and its payload frames off `reader`: the bytes, verified if `blake3`. */
async function receiveChunk(header: unknown, reader: FrameReader, o: ReceiveOptions): Promise<Uint8Array[]> {
  const { addr, id, length, blake3, signal } = o;
  const { size } = parseAnswer(header, getAnswerSchema);
  if (length !== undefined && size !== length) {
    throw new DfsError('ERR_PROTOCOL', `${addr} answered a ${length}-byte range with ${size} bytes`);
  }
  const pieces: Uint8Array[] = [];
  const target = o.into?.(size);
  if (target !== undefined && target.byteLength < size) throw new DfsError('ERR_INTERNAL', `a ${target.byteLength}-byte buffer for a ${size}-byte chunk`);
  let received = 0;
  // Each frame carries at least one byte, so this loop ends after at most `size` frames.
  while (received < size) {
    const frame = await reader.read({ signal });
    if (frame === undefined) throw new DfsError('ERR_PROTOCOL', `${addr} ended chunk ${id} after ${received} of ${size} bytes`);
    if (frame.byteLength === 0 || received + frame.byteLength > size) {
      throw new DfsError('ERR_PROTOCOL', `${addr} sent a ${frame.byteLength}-byte frame at byte ${received} of ${size}`);
    }
    if (target) {
      let at = received;
      for (const part of frame) {
        target.set(part, at);
        at += part.byteLength;
      }
    } else {
      for (const part of frame) pieces.push(part);
    }
    received += frame.byteLength;
  }
  if (target) pieces.push(target.subarray(0, size));
  if (blake3) {
    const actual = blake3.hashHex(pieces);
    if (actual !== id) throw new DfsError('ERR_CHUNK_CORRUPT', `chunk ${id} from ${addr} hashes to ${actual}`);
  }
  return pieces;
}

/** A chunk stream with its frame reader and writer, which stay with it when it is reused. */
export interface ChunkStream {
  readonly stream: Stream;
  readonly reader: FrameReader;
  readonly writer: FrameWriter;
}

/** A new chunk stream to `addr` (the protocol id travels with the first frame). */
async function dialChunkStream(peer: DfsPeer, addr: string, signal: AbortSignal, timeoutMs?: number): Promise<ChunkStream> {
  const stream = await peer.dialProtocol(addr, CHUNK_PROTOCOL, { signal, negotiateFully: false, ...(timeoutMs === undefined ? {} : { timeoutMs }) });
  return {
    stream,
    reader: new FrameReader(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES }),
    writer: new FrameWriter(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES }),
  };
}

/** Ends a stream that is not kept: our side closed (the node then closes its own), or reset. */
function endChunkStream(conn: ChunkStream): void {
  conn.reader.release();
  conn.writer.close().catch(() => conn.stream.abort(new Error('chunk stream not kept')));
}

/** Idle streams kept per node. */
const IDLE_STREAMS_PER_NODE = 4;
/**
 * Idle streams older than this are not reused: well under the node's transfer timeout (30 s by
 * default), after which it resets a quiet stream, so a borrowed stream is not one being reset.
 */
const IDLE_MAX_MS = 10_000;

/**
 * Chunk streams kept open between requests, per node, for reuse (the protocol lets a get stream
 * carry more gets, and a put stream whose payload ended with an end frame more puts). Only a
 * stream the node still reads, with nothing unread, fresh enough, is kept or handed out.
 * `close()` ends the idle ones; call it when done.
 */
export class ChunkStreams {
  readonly #idle = new Map<string, Array<{ readonly conn: ChunkStream; readonly sinceMs: number }>>();
  #closed = false;

  get closed(): boolean {
    return this.#closed;
  }

  /** An idle stream to `addr`, the most recently used first; undefined when none is usable. */
  take(addr: string): ChunkStream | undefined {
    const idle = this.#idle.get(addr);
    const now = performance.now();
    for (let entry = idle?.pop(); entry !== undefined; entry = idle?.pop()) {
      if (now - entry.sinceMs <= IDLE_MAX_MS && reusable(entry.conn)) return entry.conn;
      endChunkStream(entry.conn);
    }
    return undefined;
  }

  /** Takes back a stream whose last exchange completed; ends it if it cannot be kept. */
  give(addr: string, conn: ChunkStream): void {
    const idle = this.#idle.get(addr) ?? [];
    if (this.#closed || idle.length >= IDLE_STREAMS_PER_NODE || !reusable(conn)) {
      endChunkStream(conn);
      return;
    }
    idle.push({ conn, sinceMs: performance.now() });
    this.#idle.set(addr, idle);
  }

  /** Ends every idle stream (gracefully: the node sees the end and closes its side). */
  close(): void {
    this.#closed = true;
    for (const idle of this.#idle.values()) for (const { conn } of idle) endChunkStream(conn);
    this.#idle.clear();
  }
}

/** Whether a stream can carry another request: open both ways, nothing unread. */
function reusable(conn: ChunkStream): boolean {
  // A node that closed its side (an older one does after every request) would only cost the
  // next request a retry; stray bytes would be read as the next answer.
  return conn.stream.status === 'open' && conn.stream.readStatus === 'readable' && conn.stream.writeStatus === 'writable' && conn.reader.bufferedBytes === 0;
}

/**
 * Whole-chunk gets over streams kept open between chunks (see ChunkStreams), so reading a file
 * does not pay a stream's setup (open, protocol select, close both ways) and a fresh
 * flow-control window for every chunk. A get takes an idle stream to its node or opens one, and
 * gives it back once the answer is read whole; a failed stream is reset, never reused. A
 * borrowed stream that ends before answering (the node reset it meanwhile) is replaced by a
 * fresh one, once. `close()` ends the idle streams; call it when done.
 */
export class ChunkGetSession {
  readonly #peer: DfsPeer;
  readonly #streams = new ChunkStreams();

  constructor(peer: DfsPeer) {
    this.#peer = peer;
  }

  /**
   * Like getChunk for a whole chunk (verified against `id`), but the bytes come back as pieces:
   * one view of the `into` buffer, or the received buffers as they arrived. `ticket`: the chunk's
   * get ticket (see getChunk).
   */
  async get(addr: string, id: ChunkId, ticket: string, options: SessionGetOptions = {}): Promise<Uint8Array[]> {
    assertChunkId(id);
    assertTicketArgument(ticket);
    if (this.#streams.closed) throw new DfsError('ERR_ABORTED', 'the get session is closed');
    const blake3 = options.blake3 ?? (await loadBlake3());
    const signal = deadlineSignal(options.timeoutMs ?? DEFAULT_GET_TIMEOUT_MS, options.signal);
    const request = encodeHeader({ op: 'get', id, ticket });
    for (let attempt = 0; ; attempt++) {
      const reused = attempt === 0 ? this.#streams.take(addr) : undefined;
      const s = reused ?? (await dialChunkStream(this.#peer, addr, signal));
      let answered = false;
      try {
        await s.writer.write(request, { signal });
        const header = await s.reader.read({ signal });
        if (header === undefined) throw new DfsError('ERR_STREAM_CLOSED', `${addr} closed the get stream without answering`);
        answered = true;
        const pieces = await receiveChunk(decodeJson(header), s.reader, { addr, id, length: undefined, blake3, into: options.into, signal });
        this.#streams.give(addr, s);
        return pieces;
      } catch (err) {
        s.reader.release();
        if (s.stream.status === 'open') s.stream.abort(err instanceof Error ? err : new Error(String(err)));
        if (signal.aborted) throw errorFromAbort(signal, `getting chunk ${id} from ${addr}`);
        // A reused stream that ended before answering was closed by the node: try a fresh one.
        if (reused !== undefined && !answered) continue;
        throw err instanceof DfsError ? err : streamClosedError(s.stream, err);
      }
    }
  }

  /** Ends every idle stream (gracefully: the node sees the end and closes its side). */
  close(): void {
    this.#streams.close();
  }
}

/** Which of `ids` the node at `addr` stores, in order (batches of BATCH_MAX_IDS, one after another). */
export async function hasChunks(peer: DfsPeer, addr: string, ids: readonly ChunkId[], options: ChunkCallOptions = {}): Promise<boolean[]> {
  for (const id of ids) assertChunkId(id);
  const signal = deadlineSignal(options.timeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS, options.signal);
  const present: boolean[] = [];
  for (let at = 0; at < ids.length || at === 0; at += BATCH_MAX_IDS) {
    const batch = ids.slice(at, at + BATCH_MAX_IDS);
    const answer = await query(peer, addr, { op: 'has', ids: batch }, hasAnswerSchema, signal);
    if (answer.present.length !== batch.length) {
      throw new DfsError('ERR_PROTOCOL', `${addr} answered ${answer.present.length} flags for ${batch.length} ids`);
    }
    present.push(...answer.present);
  }
  return present;
}

/**
 * Deletes `ids` on the node at `addr`, decided with `fence` (issued by the leader when it decided
 * they were garbage). Returns how many the node removed, and `kept`: the ids it still stores and
 * refused to remove because of the fence (it accepted a put of them with a larger fence, or does
 * not know enough yet, e.g. just restarted): ask again later with a newer fence. Ids the node did
 * not have are in neither. Only peers the node allows (the masters) may: others get ERR_FORBIDDEN.
 *
 * Sent in batches of at most MAX_TICKET_IDS ids, each with the ticket `ticketFor(batch)` gives
 * (op 'delete', those ids, bearer this peer, `fence`); a node refuses a batch without a good one
 * (ERR_UNAUTHENTICATED, ERR_TOKEN_EXPIRED, ERR_FORBIDDEN). Nothing is sent for no ids.
 */
export async function deleteChunks(
  peer: DfsPeer,
  addr: string,
  ids: readonly ChunkId[],
  fence: number,
  ticketFor: (ids: string[]) => Promise<string>,
  options: ChunkCallOptions = {},
): Promise<{ deleted: number; kept: string[] }> {
  for (const id of ids) assertChunkId(id);
  assertFenceArgument(fence);
  const signal = deadlineSignal(options.timeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS, options.signal);
  let deleted = 0;
  const kept: string[] = [];
  for (let at = 0; at < ids.length; at += MAX_TICKET_IDS) {
    const batch = ids.slice(at, at + MAX_TICKET_IDS);
    const ticket = await ticketFor(batch);
    assertTicketArgument(ticket);
    const answer = await query(peer, addr, { op: 'delete', ids: batch, fence, ticket }, deleteAnswerSchema, signal);
    deleted += answer.deleted;
    kept.push(...answer.kept);
  }
  return { deleted, kept };
}

async function query<T>(peer: DfsPeer, addr: string, request: object, okSchema: Schema<T>, signal: AbortSignal): Promise<T> {
  return withStream(peer, addr, request, signal, async (header, reader) => {
    const answer = parseAnswer(header, okSchema);
    if ((await reader.read({ signal })) !== undefined) throw new DfsError('ERR_PROTOCOL', `${addr} sent more than one answer`);
    return answer;
  });
}

/** One request on a fresh chunk stream: its header out, the answer header in (see requestOnStream). */
function withStream<T>(
  peer: DfsPeer,
  addr: string,
  request: object,
  signal: AbortSignal,
  receive: (answer: unknown, reader: FrameReader) => Promise<T>,
): Promise<T> {
  return requestOnStream(peer, addr, CHUNK_PROTOCOL, encodeHeader(request), { signal, maxFrameBytes: CHUNK_FRAME_MAX_BYTES }, receive);
}
