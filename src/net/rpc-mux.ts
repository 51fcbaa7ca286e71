import type { Stream } from '@libp2p/interface';
import { DfsError } from '../errors/index.ts';
import { deadlineSignal } from './deadline.ts';
import { DEFAULT_MAX_FRAME_BYTES, FrameReader, FrameWriter, trySendNow } from './framing.ts';
import type { DfsPeer } from './peer.ts';
import { decodeJson, errorResponse, errorWire, handleUntil, parseResponse, parseWireError, type RpcHandler } from './rpc.ts';
import { encodeWire, type Infer, type Schema } from './schema.ts';

/**
 * Multiplexed request/response: one long-lived stream per (caller, target, protocol), many
 * calls in flight on it, each frame `{ id, req }` one way and `{ id, result | error }` back.
 * For small, frequent calls (metadata): opening a stream per call costs ~0.4 ms of CPU on each
 * side, which capped a master at ~2,500 calls/s; here a call costs a frame each way.
 *
 * Everything the server holds for a caller is bounded, and the excess falls on that caller:
 * - a request frame: `maxFrameBytes` (bigger ones are refused with ERR_PROTOCOL and the stream
 *   reset); a frame that stops arriving: FrameReader's unfinished-frame timeout and budget;
 * - calls in flight: per stream and per peer (across its streams); beyond, ERR_OVERLOADED;
 * - bytes of requests being parsed or handled plus answers waiting to go out: per peer and for
 *   all peers together; a request beyond is answered ERR_OVERLOADED without being parsed;
 * - answers waiting for a caller that does not read them (beyond what the stream's send window
 *   takes): past the stream's bounds (count, bytes) or the peer's (bytes), or when none could be
 *   handed over for `answerTimeoutMs`, the stream is reset (ERR_OVERLOADED / ERR_TIMEOUT), which
 *   frees them all. Requests keep being read meanwhile (pausing would leave the muxer holding a
 *   window's worth per stream, unaccounted), so a caller that does not read is reset soon;
 * - a handler: `handlerTimeoutMs`.
 * A stream-level refusal is sent, when the stream can take it at once, as one frame
 * `{ error }` without an id before the reset; RpcChannel fails the stream's calls with it.
 */
export interface ServeMuxRpcOptions {
  /** Largest request and answer frame. Default 4 MiB (DEFAULT_MAX_FRAME_BYTES). */
  readonly maxFrameBytes?: number;
  /** Streams (callers) one connection may have open. Default 64. */
  readonly maxInboundStreams?: number;
  /** Calls in flight per stream; beyond it a call is answered ERR_OVERLOADED. Default 1024. */
  readonly maxInflightPerStream?: number;
  /** Calls in flight per remote peer, all its streams together. Default 1024. */
  readonly maxInflightPerPeer?: number;
  /**
   * Bytes one remote peer may have here at once: its requests being parsed or handled (as
   * received) and the answers waiting to go to it. A request past it is answered
   * ERR_OVERLOADED; answers past it reset the stream they are for. Default 4 x maxFrameBytes.
   */
  readonly maxBytesPerPeer?: number;
  /** The same for all peers together (requests past it: ERR_OVERLOADED). Default 16 x maxFrameBytes. */
  readonly maxBytesTotal?: number;
  /** Answers waiting to go out on one stream; beyond it the stream is reset. Default 1024. */
  readonly maxQueuedAnswers?: number;
  /** Their bytes; beyond it the stream is reset. Default 2 x maxFrameBytes. */
  readonly maxQueuedAnswerBytes?: number;
  /** Answers waiting this long with none taken by the caller reset the stream (ERR_TIMEOUT). Default 30 s. */
  readonly answerTimeoutMs?: number;
  /** Bound on one handler; past it the caller gets ERR_TIMEOUT. Default 30 s. */
  readonly handlerTimeoutMs?: number;
  /** FrameReader's unfinished-frame idle timeout for the requests (default its own, 30 s). */
  readonly frameIdleTimeoutMs?: number;
}

/** What one remote peer has on this server now, all its streams together. */
interface PeerLoad {
  calls: number;
  requestBytes: number;
  answerBytes: number;
  streams: number;
}

export interface MuxRpcServerStats {
  /** Calls answered ERR_OVERLOADED: in-flight or byte bounds (per stream, per peer, total). */
  refusedCalls: number;
  /** Streams reset because their caller did not take its answers (bound or timeout). */
  resetSlowReaders: number;
  /** Bytes of requests being handled and answers waiting, all peers, now. */
  bytes: number;
  peakBytes: number;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();
/** A stream's read loop yields to the event loop after this many calls or milliseconds. */
const MAX_CALLS_PER_SLICE = 32;
const MAX_SLICE_MS = 4;
/** `{"id":123,` at the start of a request, as RpcChannel writes it: the id without a parse. */
const LEADING_ID = /^\{"id":(\d{1,15}),/;

/** Serves `protocol` with `handler`; returns the server's counters (live). */
export async function serveMuxRpc<S extends Schema<unknown>>(
  peer: DfsPeer,
  protocol: string,
  requestSchema: S,
  handler: RpcHandler<Infer<S>>,
  options: ServeMuxRpcOptions = {},
): Promise<MuxRpcServerStats> {
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const maxInflightPerStream = options.maxInflightPerStream ?? 1024;
  const maxInflightPerPeer = options.maxInflightPerPeer ?? 1024;
  const maxBytesPerPeer = options.maxBytesPerPeer ?? 4 * maxFrameBytes;
  const maxBytesTotal = options.maxBytesTotal ?? 16 * maxFrameBytes;
  const maxQueuedAnswers = options.maxQueuedAnswers ?? 1024;
  const maxQueuedAnswerBytes = options.maxQueuedAnswerBytes ?? 2 * maxFrameBytes;
  const answerTimeoutMs = options.answerTimeoutMs ?? 30_000;
  const handlerTimeoutMs = options.handlerTimeoutMs ?? 30_000;
  const stats: MuxRpcServerStats = { refusedCalls: 0, resetSlowReaders: 0, bytes: 0, peakBytes: 0 };
  const loads = new Map<string, PeerLoad>();
  /** Drops a peer's entry once it has nothing here (no stream, call or byte). */
  const forgetIfIdle = (peerId: string, load: PeerLoad): void => {
    if (load.streams === 0 && load.calls === 0 && load.requestBytes === 0 && load.answerBytes === 0 && loads.get(peerId) === load) loads.delete(peerId);
  };
  const addBytes = (load: PeerLoad, kind: 'requestBytes' | 'answerBytes', delta: number): void => {
    load[kind] += delta;
    stats.bytes += delta;
    if (stats.bytes > stats.peakBytes) stats.peakBytes = stats.bytes;
  };

  await peer.handle(
    protocol,
    async (stream, remote) => {
      let load = loads.get(remote.peerId);
      if (!load) {
        load = { calls: 0, requestBytes: 0, answerBytes: 0, streams: 0 };
        loads.set(remote.peerId, load);
      }
      load.streams++;
      const peerLoad = load;
      const writer = new FrameWriter(stream, { maxFrameBytes });
      const streamGone = new AbortController();
      let inflight = 0;
      // Answers handed to the writer and not yet to the stream, oldest first (writes settle in order).
      let queuedAnswers = 0;
      let queuedBytes = 0;
      let lastAnswerProgress = performance.now();
      let answerTimer: NodeJS.Timeout | undefined;
      stream.addEventListener(
        'close',
        () => {
          streamGone.abort(new DfsError('ERR_STREAM_CLOSED', `${protocol}: the caller went away`));
          if (answerTimer) clearTimeout(answerTimer);
        },
        { once: true },
      );

      /** Resets the stream, telling the caller why first if the stream takes it at once. */
      const reset = (err: DfsError): void => {
        if (stream.status !== 'open') return;
        trySendNow(stream, errorResponse(err));
        stream.abort(err);
      };

      const checkAnswersMoving = (): void => {
        answerTimer = undefined;
        if (queuedAnswers === 0 || stream.status !== 'open') return;
        const stuckFor = performance.now() - lastAnswerProgress;
        if (stuckFor >= answerTimeoutMs) {
          stats.resetSlowReaders++;
          reset(new DfsError('ERR_TIMEOUT', `${protocol}: ${queuedAnswers} answers (${queuedBytes} bytes) waited ${Math.round(stuckFor)} ms for the caller to read any`));
          return;
        }
        answerTimer = setTimeout(checkAnswersMoving, Math.max(10, answerTimeoutMs - stuckFor));
        answerTimer.unref?.();
      };

      const answer = (id: number, body: string): void => {
        if (stream.status !== 'open') return;
        // `body` is a JSON object's text: the id is spliced in as its first member.
        let bytes = textEncoder.encode(`{"id":${id},${body.slice(1)}`);
        if (bytes.byteLength > maxFrameBytes) {
          const tooBig = new DfsError('ERR_PROTOCOL', `${protocol}: the answer of ${bytes.byteLength} bytes exceeds the ${maxFrameBytes}-byte frame limit`);
          bytes = textEncoder.encode(`{"id":${id},${errorWire(tooBig).slice(1)}`);
        }
        const length = bytes.byteLength;
        if (queuedAnswers + 1 > maxQueuedAnswers || queuedBytes + length > maxQueuedAnswerBytes || peerLoad.answerBytes + length > maxBytesPerPeer) {
          stats.resetSlowReaders++;
          reset(
            new DfsError(
              'ERR_OVERLOADED',
              `${protocol}: the caller does not read its answers (${queuedAnswers} waiting, ${queuedBytes} bytes on this stream, ${peerLoad.answerBytes} for this peer)`,
            ),
          );
          return;
        }
        if (queuedAnswers === 0) lastAnswerProgress = performance.now();
        queuedAnswers++;
        queuedBytes += length;
        addBytes(peerLoad, 'answerBytes', length);
        if (!answerTimer) {
          answerTimer = setTimeout(checkAnswersMoving, answerTimeoutMs);
          answerTimer.unref?.();
        }
        const settled = (): void => {
          queuedAnswers--;
          queuedBytes -= length;
          addBytes(peerLoad, 'answerBytes', -length);
          lastAnswerProgress = performance.now();
          forgetIfIdle(remote.peerId, peerLoad);
        };
        writer.write(bytes).then(settled, (err: unknown) => {
          settled();
          stream.abort(err instanceof Error ? err : new Error(String(err)));
        });
      };

      /** Why a request of `bytes` may not start now, or undefined. */
      const refusal = (bytes: number): DfsError | undefined => {
        if (inflight >= maxInflightPerStream) return new DfsError('ERR_OVERLOADED', `${protocol}: too many calls in flight on one stream (${inflight})`);
        if (peerLoad.calls >= maxInflightPerPeer) return new DfsError('ERR_OVERLOADED', `${protocol}: too many calls in flight from this peer (${peerLoad.calls})`);
        const held = peerLoad.requestBytes + peerLoad.answerBytes;
        if (held + bytes > maxBytesPerPeer) {
          return new DfsError('ERR_OVERLOADED', `${protocol}: this peer has ${held} bytes of requests and answers here; a ${bytes}-byte request would pass its ${maxBytesPerPeer}-byte bound`);
        }
        if (stats.bytes + bytes > maxBytesTotal) return new DfsError('ERR_OVERLOADED', `${protocol}: the server holds ${stats.bytes} bytes of requests and answers, its bound; retry later`);
        return undefined;
      };

      const reader = new FrameReader(stream, {
        maxFrameBytes,
        ...(options.frameIdleTimeoutMs === undefined ? {} : { frameIdleTimeoutMs: options.frameIdleTimeoutMs }),
        // Say why (no id: the whole stream) before the reader resets it.
        onAbort: (err) => trySendNow(stream, errorResponse(err)),
      });
      try {
        let sliceStart = performance.now();
        let sliceCalls = 0;
        for (;;) {
          // Frames already buffered come back without a turn of the event loop, and so do the
          // handlers' synchronous parts: a caller sending thousands at once would keep this
          // process from everything else (Raft's heartbeats among it). Every few calls or
          // milliseconds, the loop lets I/O and timers run first.
          if (++sliceCalls > MAX_CALLS_PER_SLICE || performance.now() - sliceStart > MAX_SLICE_MS) {
            await new Promise<void>((resolve) => setImmediate(resolve));
            sliceStart = performance.now();
            sliceCalls = 0;
          }
          const frame = await reader.read();
          if (frame === undefined) break;
          // Gone (reset, or reset by us): whatever requests it left buffered go unanswered, so
          // they are not handled either (a reset client must not keep this process busy).
          if (stream.status !== 'open') break;
          const bytes = frame.byteLength;
          const refused = refusal(bytes);
          if (refused) {
            stats.refusedCalls++;
            // Refused unparsed: a peer over its bounds costs no JSON.parse of its big requests.
            const leading = LEADING_ID.exec(textDecoder.decode(frame.subarray(0, Math.min(bytes, 32))));
            if (!leading) throw refused;
            answer(Number(leading[1]), errorWire(refused));
            continue;
          }
          const envelope = decodeJson(frame) as { id?: unknown; req?: unknown };
          const id = envelope?.id;
          if (typeof id !== 'number' || !Number.isSafeInteger(id)) throw new DfsError('ERR_PROTOCOL', `${protocol}: a call without a numeric id`);
          inflight++;
          peerLoad.calls++;
          addBytes(peerLoad, 'requestBytes', bytes);
          void (async () => {
            let body: string;
            try {
              const request = requestSchema.parse(envelope.req) as Infer<S>;
              const result = await handleUntil(handler, request, remote, streamGone.signal, handlerTimeoutMs, protocol);
              body = encodeWire({ result: result ?? null });
            } catch (err) {
              body = errorWire(err);
            } finally {
              inflight--;
              peerLoad.calls--;
              addBytes(peerLoad, 'requestBytes', -bytes);
            }
            answer(id, body);
            forgetIfIdle(remote.peerId, peerLoad);
          })();
        }
      } catch (err) {
        // A malformed call: tell the caller before the stream is aborted (by peer.handle).
        if (stream.status === 'open' && err instanceof DfsError) trySendNow(stream, errorResponse(err));
        throw err;
      } finally {
        reader.release();
        peerLoad.streams--;
        // Calls still running keep the entry (and their bytes) until they end.
        forgetIfIdle(remote.peerId, peerLoad);
      }
    },
    { maxInboundStreams: options.maxInboundStreams ?? 64 },
  );
  return stats;
}

interface PendingCall {
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
  readonly timer: NodeJS.Timeout;
}

/** The caller's side: one stream to one target, opened on first use and again after it breaks. */
export class RpcChannel {
  readonly #peer: DfsPeer;
  readonly #target: string;
  readonly #protocol: string;
  readonly #maxFrameBytes: number;
  readonly #pending = new Map<number, PendingCall>();
  #nextId = 1;
  #open: Promise<{ stream: Stream; writer: FrameWriter }> | undefined;

  /** `maxFrameBytes`: the largest request and answer; must match the server's. Default 4 MiB. */
  constructor(peer: DfsPeer, target: string, protocol: string, options: RpcChannelOptions = {}) {
    this.#peer = peer;
    this.#target = target;
    this.#protocol = protocol;
    this.#maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  async call<T>(request: unknown, responseSchema: Schema<T>, options: { timeoutMs?: number } = {}): Promise<T> {
    const timeoutMs = Math.max(1, Math.ceil(options.timeoutMs ?? 10_000));
    const id = this.#nextId++;
    const payload = textEncoder.encode(encodeWire({ id, req: request }));
    if (payload.byteLength > this.#maxFrameBytes) throw new DfsError('ERR_PROTOCOL', `${this.#protocol}: request of ${payload.byteLength} bytes exceeds the frame limit`);
    const answer = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new DfsError('ERR_TIMEOUT', `${this.#protocol} call to ${this.#target} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
    });
    // The answer can settle before it is awaited: its timer, or the stream failing, while the
    // connection or the write below is still under way (a master that accepts connections but
    // never answers, e.g. a stopped process). So its outcome is taken as a value from the start
    // and thrown where it is awaited: that rejection is never unhandled, and never lost.
    const outcome = answer.then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    const forget = (): void => {
      const pending = this.#pending.get(id);
      if (pending) {
        clearTimeout(pending.timer);
        this.#pending.delete(id);
      }
    };
    let writer: FrameWriter;
    try {
      ({ writer } = await this.#connection(timeoutMs));
    } catch (err) {
      forget();
      throw err;
    }
    try {
      await writer.write(payload, { signal: deadlineSignal(timeoutMs) });
    } catch (err) {
      // The server reset the stream while we wrote: it may have said why (an oversized request,
      // a bound passed), and the stream's read loop, ending, fails this call with that
      // (bounded by the call's timer).
      if (!(err instanceof DfsError && err.code === 'ERR_STREAM_CLOSED' && this.#pending.has(id))) {
        forget();
        throw err;
      }
    }
    const settled = await outcome;
    if (!settled.ok) throw settled.error;
    return parseResponse(settled.value, responseSchema);
  }

  close(): void {
    void this.#open?.then(({ stream }) => stream.abort(new Error('channel closed')), () => {});
    this.#open = undefined;
  }

  #connection(timeoutMs: number): Promise<{ stream: Stream; writer: FrameWriter }> {
    this.#open ??= this.#peer.dialProtocol(this.#target, this.#protocol, { timeoutMs }).then(
      (stream) => {
        const writer = new FrameWriter(stream, { maxFrameBytes: this.#maxFrameBytes });
        void this.#readLoop(stream);
        return { stream, writer };
      },
      (err: unknown) => {
        this.#open = undefined;
        throw err;
      },
    );
    return this.#open;
  }

  async #readLoop(stream: Stream): Promise<void> {
    let failure: unknown = new DfsError('ERR_STREAM_CLOSED', `${this.#protocol} stream to ${this.#target} closed`);
    let announced: DfsError | undefined;
    try {
      for await (const frame of new FrameReader(stream, { maxFrameBytes: this.#maxFrameBytes })) {
        const envelope = decodeJson(frame) as { id?: unknown; error?: unknown };
        if (typeof envelope?.id !== 'number' && typeof envelope === 'object' && envelope !== null && Object.hasOwn(envelope, 'error')) {
          // The server refuses the whole stream (and resets it next): every call fails with why.
          announced = parseWireError(envelope.error);
          break;
        }
        const pending = typeof envelope?.id === 'number' ? this.#pending.get(envelope.id) : undefined;
        if (!pending) continue; // timed out meanwhile
        this.#pending.delete(envelope.id as number);
        clearTimeout(pending.timer);
        pending.resolve(envelope);
      }
    } catch (err) {
      failure = err instanceof DfsError ? err : new DfsError('ERR_STREAM_CLOSED', `${this.#protocol} stream to ${this.#target} failed: ${(err as Error).message}`);
    } finally {
      if (announced) {
        failure = announced;
        if (stream.status === 'open') stream.abort(announced);
      }
      if (this.#open) {
        const current = await this.#open.catch(() => undefined);
        if (current?.stream === stream) this.#open = undefined;
      }
      for (const [id, p] of this.#pending) {
        clearTimeout(p.timer);
        p.reject(failure);
        this.#pending.delete(id);
      }
    }
  }
}

export interface RpcChannelOptions {
  /** Largest request and answer frame; should match the server's maxFrameBytes. Default 4 MiB. */
  readonly maxFrameBytes?: number;
}

/** One channel per target, shared by everyone using the same peer and protocol. */
export class RpcChannelPool {
  readonly #peer: DfsPeer;
  readonly #protocol: string;
  readonly #options: RpcChannelOptions;
  readonly #channels = new Map<string, RpcChannel>();

  constructor(peer: DfsPeer, protocol: string, options: RpcChannelOptions = {}) {
    this.#peer = peer;
    this.#protocol = protocol;
    this.#options = options;
  }

  channel(target: string): RpcChannel {
    let c = this.#channels.get(target);
    if (!c) {
      c = new RpcChannel(this.#peer, target, this.#protocol, this.#options);
      this.#channels.set(target, c);
    }
    return c;
  }

  closeAll(): void {
    for (const c of this.#channels.values()) c.close();
    this.#channels.clear();
  }
}
