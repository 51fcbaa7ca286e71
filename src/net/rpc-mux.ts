import type { Stream } from '@libp2p/interface';
import { DfsError } from '../errors/index.ts';
import { deadlineSignal } from './deadline.ts';
import { DEFAULT_MAX_FRAME_BYTES, FrameReader, FrameWriter } from './framing.ts';
import type { DfsPeer } from './peer.ts';
import { decodeJson, errorWire, handleUntil, parseResponse, type RpcHandler } from './rpc.ts';
import { encodeWire, type Infer, type Schema } from './schema.ts';

/**
 * Multiplexed request/response: one long-lived stream per (caller, target, protocol), many
 * calls in flight on it, each frame `{ id, req }` one way and `{ id, result | error }` back.
 * For small, frequent calls (metadata): opening a stream per call costs ~0.4 ms of CPU on each
 * side, which capped a master at ~2,500 calls/s; here a call costs a frame each way.
 * Everything is still bounded: calls in flight per stream, handler time, frame size.
 */
export interface ServeMuxRpcOptions {
  readonly maxFrameBytes?: number;
  /** Streams (callers) one connection may have open. Default 64. */
  readonly maxInboundStreams?: number;
  /** Calls in flight per stream; beyond it a call is answered ERR_OVERLOADED. Default 1024. */
  readonly maxInflightPerStream?: number;
  /** Bound on one handler; past it the caller gets ERR_TIMEOUT. Default 30 s. */
  readonly handlerTimeoutMs?: number;
}

const textEncoder = new TextEncoder();

export async function serveMuxRpc<S extends Schema<unknown>>(
  peer: DfsPeer,
  protocol: string,
  requestSchema: S,
  handler: RpcHandler<Infer<S>>,
  options: ServeMuxRpcOptions = {},
): Promise<void> {
  await peer.handle(
    protocol,
    async (stream, remote) => {
      const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
      const writer = new FrameWriter(stream, { maxFrameBytes });
      const streamGone = new AbortController();
      stream.addEventListener('close', () => streamGone.abort(new DfsError('ERR_STREAM_CLOSED', `${protocol}: the caller went away`)), { once: true });
      let inflight = 0;
      // `body` is a JSON object's text: the id is spliced in as its first member.
      const answer = (id: number, body: string) => {
        writer.write(textEncoder.encode(`{"id":${id},${body.slice(1)}`)).catch((err: unknown) => stream.abort(err instanceof Error ? err : new Error(String(err))));
      };
      for await (const frame of new FrameReader(stream, { maxFrameBytes })) {
        const envelope = decodeJson(frame) as { id?: unknown; req?: unknown };
        const id = envelope?.id;
        if (typeof id !== 'number' || !Number.isSafeInteger(id)) throw new DfsError('ERR_PROTOCOL', `${protocol}: a call without a numeric id`);
        if (inflight >= (options.maxInflightPerStream ?? 1024)) {
          answer(id, errorWire(new DfsError('ERR_OVERLOADED', `${protocol}: too many calls in flight on one stream`)));
          continue;
        }
        inflight++;
        void (async () => {
          let body: string;
          try {
            const request = requestSchema.parse(envelope.req) as Infer<S>;
            const result = await handleUntil(handler, request, remote, streamGone.signal, options.handlerTimeoutMs ?? 30_000, protocol);
            body = encodeWire({ result: result ?? null });
          } catch (err) {
            body = errorWire(err);
          } finally {
            inflight--;
          }
          if (stream.status === 'open') answer(id, body);
        })();
      }
    },
    { maxInboundStreams: options.maxInboundStreams ?? 64 },
  );
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

  constructor(peer: DfsPeer, target: string, protocol: string, options: { maxFrameBytes?: number } = {}) {
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
    try {
      const { writer } = await this.#connection(timeoutMs);
      await writer.write(payload, { signal: deadlineSignal(timeoutMs) });
    } catch (err) {
      const pending = this.#pending.get(id);
      if (pending) {
        clearTimeout(pending.timer);
        this.#pending.delete(id);
      }
      throw err;
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
    try {
      for await (const frame of new FrameReader(stream, { maxFrameBytes: this.#maxFrameBytes })) {
        const envelope = decodeJson(frame) as { id?: unknown };
        const pending = typeof envelope?.id === 'number' ? this.#pending.get(envelope.id) : undefined;
        if (!pending) continue; // timed out meanwhile
        this.#pending.delete(envelope.id as number);
        clearTimeout(pending.timer);
        pending.resolve(envelope);
      }
    } catch (err) {
      failure = err instanceof DfsError ? err : new DfsError('ERR_STREAM_CLOSED', `${this.#protocol} stream to ${this.#target} failed: ${(err as Error).message}`);
    } finally {
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

/** One channel per target, shared by everyone using the same peer and protocol. */
export class RpcChannelPool {
  readonly #peer: DfsPeer;
  readonly #protocol: string;
  readonly #channels = new Map<string, RpcChannel>();

  constructor(peer: DfsPeer, protocol: string) {
    this.#peer = peer;
    this.#protocol = protocol;
  }

  channel(target: string): RpcChannel {
    let c = this.#channels.get(target);
    if (!c) {
      c = new RpcChannel(this.#peer, target, this.#protocol);
      this.#channels.set(target, c);
    }
    return c;
  }

  closeAll(): void {
    for (const c of this.#channels.values()) c.close();
    this.#channels.clear();
  }
}
