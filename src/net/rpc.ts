import type { Stream } from '@libp2p/interface';
import type { Uint8ArrayList } from 'uint8arraylist';
import { DfsError, ERROR_CODES } from '../errors/index.ts';
import type { ErrorCode } from '../errors/index.ts';
import { deadlineSignal, errorFromAbort, raceAbort } from './deadline.ts';
import { DEFAULT_MAX_FRAME_BYTES, FrameReader, FrameWriter, trySendNow } from './framing.ts';
import type { DfsPeer, RemotePeer } from './peer.ts';
import { encodeWire, schema } from './schema.ts';
import type { Infer, Schema } from './schema.ts';

/**
 * Request/response over a protocol, one stream per call. A yamux stream costs no connection
 * setup, only one protocol-negotiation round trip, and a stream per call keeps calls
 * independent: a slow or failed call never blocks or poisons another, backpressure and limits
 * apply per call, and there are no request ids to match.
 *
 * On the wire, each side sends exactly one length-prefixed JSON frame and then closes its write
 * side: the request, then `{"result": ...}` or `{"error": {"code", "message"}}`. Both are
 * validated on receipt: the request by the server's schema, the result by the caller's.
 */

export interface RpcContext {
  readonly remote: RemotePeer;
  /** Fires when the call times out on this side or the caller goes away. */
  readonly signal: AbortSignal;
}

export type RpcHandler<Request> = (request: Request, context: RpcContext) => unknown;

export interface ServeRpcOptions {
  /** Largest request (and response) frame. Default 4 MiB. */
  readonly maxFrameBytes?: number;
  /** Concurrent calls one connection may have in flight. libp2p default 32. */
  readonly maxInboundStreams?: number;
  /** Bound on receiving the request, and on sending the response. Default 10 s. */
  readonly transferTimeoutMs?: number;
  /** Bound on the handler; past it the caller gets ERR_TIMEOUT. Default 30 s. */
  readonly handlerTimeoutMs?: number;
}

export interface CallRpcOptions {
  /** Bound on the whole call: connect, send, wait, receive. Default 10 s. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  /** Largest request and response frame. Default 4 MiB. */
  readonly maxFrameBytes?: number;
}

const DEFAULT_TRANSFER_TIMEOUT_MS = 10_000;
const DEFAULT_HANDLER_TIMEOUT_MS = 30_000;
const DEFAULT_CALL_TIMEOUT_MS = 10_000;

const wireError = schema.object({
  code: schema.string({ maxLength: 64 }),
  message: schema.string({ maxLength: 8192 }),
});

/** Serves `protocol` on `peer`: each request is validated by `requestSchema`, then handled. */
export async function serveRpc<S extends Schema<unknown>>(
  peer: DfsPeer,
  protocol: string,
  requestSchema: S,
  handler: RpcHandler<Infer<S>>,
  options: ServeRpcOptions = {},
): Promise<void> {
  const handleOptions = options.maxInboundStreams === undefined ? {} : { maxInboundStreams: options.maxInboundStreams };
  await peer.handle(protocol, (stream, remote) => serveOneCall(stream, remote, requestSchema as Schema<Infer<S>>, handler, options), handleOptions);
}

async function serveOneCall<Request>(
  stream: Stream,
  remote: RemotePeer,
  requestSchema: Schema<Request>,
  handler: RpcHandler<Request>,
  options: ServeRpcOptions,
): Promise<void> {
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const transferTimeoutMs = options.transferTimeoutMs ?? DEFAULT_TRANSFER_TIMEOUT_MS;
  const reader = new FrameReader(stream, {
    maxFrameBytes,
    // Tell the caller why (oversized, or a bound passed) before the reader aborts the stream.
    onAbort: (err) => trySendNow(stream, errorResponse(err)),
  });
  let response: Uint8Array;
  try {
    const frame = await reader.read({ signal: deadlineSignal(transferTimeoutMs) });
    if (frame === undefined) throw new DfsError('ERR_PROTOCOL', `${stream.protocol}: stream ended before a request arrived`);
    const request = requestSchema.parse(decodeJson(frame));
    const result = await runHandler(stream, remote, request, handler, options.handlerTimeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS);
    response = utf8(encodeWire({ result: result ?? null }));
    if (response.byteLength > maxFrameBytes) {
      throw new DfsError('ERR_PROTOCOL', `${stream.protocol}: response of ${response.byteLength} bytes exceeds the ${maxFrameBytes}-byte frame limit`);
    }
  } catch (err) {
    if (stream.status !== 'open') return; // reset by the caller, or aborted by the reader: nobody to answer
    response = errorResponse(err);
  } finally {
    reader.release();
  }
  const signal = deadlineSignal(transferTimeoutMs);
  const writer = new FrameWriter(stream, { maxFrameBytes });
  try {
    await writer.write(response, { signal });
    await writer.close({ signal });
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)));
  }
}

/** handleUntil for a call on its own stream: the caller is gone when that stream closes. */
async function runHandler<Request>(
  stream: Stream,
  remote: RemotePeer,
  request: Request,
  handler: RpcHandler<Request>,
  handlerTimeoutMs: number,
): Promise<unknown> {
  const callerGone = new AbortController();
  const onClose = (): void => callerGone.abort(new DfsError('ERR_STREAM_CLOSED', `${stream.protocol}: the caller went away`));
  stream.addEventListener('close', onClose);
  try {
    return await handleUntil(handler, request, remote, callerGone.signal, handlerTimeoutMs, stream.protocol);
  } finally {
    stream.removeEventListener('close', onClose);
  }
}

/**
 * Runs `handler` with a signal that fires at its deadline or when `gone` does (the caller went
 * away), and stops waiting for it then: a handler that ignores its signal cannot hold the caller
 * past the deadline.
 */
export async function handleUntil<Request>(
  handler: RpcHandler<Request>,
  request: Request,
  remote: RemotePeer,
  gone: AbortSignal,
  handlerTimeoutMs: number,
  protocol: string,
): Promise<unknown> {
  // Not deadlineSignal: AbortSignal.any ties a signal to the stream's `gone` for as long as the
  // stream lives, and AbortSignal.timeout keeps its timer for the whole timeout, so a peer
  // sending many quick calls on one stream piled up signals and timers (hundreds of MB under a
  // flood of refused calls). Here both are undone the moment the handler ends.
  const controller = new AbortController();
  const onGone = (): void => controller.abort(gone.reason);
  if (gone.aborted) onGone();
  else gone.addEventListener('abort', onGone, { once: true });
  const timer = setTimeout(() => controller.abort(new DOMException(`handling ${protocol} took over ${handlerTimeoutMs} ms`, 'TimeoutError')), handlerTimeoutMs);
  try {
    return await raceAbort(Promise.resolve().then(() => handler(request, { remote, signal: controller.signal })), controller.signal, `handling ${protocol}`);
  } finally {
    clearTimeout(timer);
    gone.removeEventListener('abort', onGone);
  }
}

/**
 * Calls `protocol` on `target` (a multiaddr with /p2p/<id>, or a known peer id) and returns the
 * validated result. Never hangs: the whole call is bounded by `timeoutMs`. Fails with
 * ERR_PEER_UNREACHABLE, ERR_TIMEOUT, ERR_ABORTED, ERR_STREAM_CLOSED, ERR_PROTOCOL (malformed
 * or oversized message either way), or the DfsError code the server answered with (a code this
 * build does not know becomes ERR_PROTOCOL).
 */
export async function callRpc<T>(
  peer: DfsPeer,
  target: string,
  protocol: string,
  request: unknown,
  responseSchema: Schema<T>,
  options: CallRpcOptions = {},
): Promise<T> {
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const payload = utf8(encodeWire(request));
  if (payload.byteLength > maxFrameBytes) {
    throw new DfsError('ERR_PROTOCOL', `${protocol}: request of ${payload.byteLength} bytes exceeds the ${maxFrameBytes}-byte frame limit`);
  }
  const signal = deadlineSignal(options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS, options.signal);
  return requestOnStream(peer, target, protocol, payload, { signal, maxFrameBytes }, async (answer) => parseResponse(answer, responseSchema));
}

/**
 * One request on a fresh stream: dials `protocol` on `target`, writes `payload` as one frame and
 * closes the write side, reads the answer's first frame (JSON) and hands it, with the reader for
 * any frames after it, to `receive`. The stream is reset unless `receive` succeeds. Shared by
 * callRpc and the chunk protocol's client.
 *
 * Errors are DfsErrors: ERR_PEER_UNREACHABLE, ERR_TIMEOUT or ERR_ABORTED (from `signal`),
 * ERR_PROTOCOL (no answer, or one that is not JSON), ERR_STREAM_CLOSED, or whatever `receive`
 * throws. When writing failed and the answer then failed to come, the write error is reported:
 * it says more than "stream closed".
 */
export async function requestOnStream<T>(
  peer: DfsPeer,
  target: string,
  protocol: string,
  payload: Uint8Array,
  options: { readonly signal: AbortSignal; readonly maxFrameBytes: number },
  receive: (answer: unknown, reader: FrameReader) => Promise<T>,
): Promise<T> {
  const { signal, maxFrameBytes } = options;
  const what = `${protocol} to ${target}`;
  // The request is written first, so the protocol id can travel with it (one round trip less).
  const stream = await peer.dialProtocol(target, protocol, { signal, negotiateFully: false });
  // The reader listens from the start: if the server refuses the request (e.g. oversized), its
  // answer may arrive while we are still writing.
  const reader = new FrameReader(stream, { maxFrameBytes });
  let succeeded = false;
  try {
    let writeError: unknown;
    try {
      const writer = new FrameWriter(stream, { maxFrameBytes });
      await writer.write(payload, { signal });
      await writer.close({ signal });
    } catch (err) {
      if (signal.aborted) throw errorFromAbort(signal, what);
      writeError = err; // the answer, if one came, says more than "stream closed"
    }
    try {
      const frame = await reader.read({ signal });
      if (frame === undefined) throw writeError ?? new DfsError('ERR_PROTOCOL', `${what}: closed the stream without answering`);
      const result = await receive(decodeJson(frame), reader);
      succeeded = true;
      return result;
    } catch (err) {
      throw err instanceof DfsError && err.code === 'ERR_STREAM_CLOSED' && writeError instanceof DfsError ? writeError : err;
    }
  } catch (err) {
    if (err instanceof DfsError) throw err;
    if (signal.aborted) throw errorFromAbort(signal, what);
    throw new DfsError('ERR_STREAM_CLOSED', `${what}: ${(err as Error).message}`, { cause: err });
  } finally {
    reader.release();
    // After a good answer both sides have closed their write side and the stream is done;
    // otherwise reset it so neither side keeps it open.
    if (!succeeded && stream.status === 'open') stream.abort(new Error(`${protocol} request failed`));
  }
}

export function parseResponse<T>(envelope: unknown, responseSchema: Schema<T>): T {
  if (typeof envelope !== 'object' || envelope === null || Array.isArray(envelope)) {
    throw new DfsError('ERR_PROTOCOL', `response: expected object, got ${Array.isArray(envelope) ? 'array' : envelope === null ? 'null' : typeof envelope}`);
  }
  if (Object.hasOwn(envelope, 'error')) throw parseWireError((envelope as { error: unknown }).error);
  return responseSchema.parseAt((envelope as { result?: unknown }).result, 'result');
}

/** The DfsError a peer sent as `{ code, message }` (a code this build does not know: ERR_PROTOCOL). */
export function parseWireError(error: unknown): DfsError {
  const { code, message } = wireError.parseAt(error, 'error');
  if (Object.hasOwn(ERROR_CODES, code)) return new DfsError(code as ErrorCode, message);
  return new DfsError('ERR_PROTOCOL', `peer answered with unknown error ${code}: ${message}`);
}

export function errorResponse(err: unknown): Uint8Array {
  return utf8(errorWire(err));
}

/** The wire form of a failure: `{"error":{"code","message"}}`, a DfsError keeping its code. */
export function errorWire(err: unknown): string {
  const error =
    err instanceof DfsError
      ? { code: err.code, message: err.message }
      : { code: 'ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) };
  return JSON.stringify({ error: { code: error.code, message: error.message.slice(0, 4096) } });
}

const textDecoder = new TextDecoder('utf-8', { fatal: true });
const textEncoder = new TextEncoder();

function utf8(text: string): Uint8Array {
  return textEncoder.encode(text);
}

export function decodeJson(frame: Uint8ArrayList): unknown {
  let text: string;
  try {
    text = textDecoder.decode(frame.subarray());
  } catch (err) {
    throw new DfsError('ERR_PROTOCOL', 'message is not valid UTF-8', { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new DfsError('ERR_PROTOCOL', `message is not JSON: ${(err as Error).message}`, { cause: err });
  }
}
