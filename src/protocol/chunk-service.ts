import type { PrivateKey, PublicKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { Uint8ArrayList } from 'uint8arraylist';
import { loadBlake3 } from '../chunker/index.ts';
import type { Blake3, Blake3Hasher } from '../chunker/index.ts';
import { ChunkStreams, OutboundPut } from './chunk-client.ts';
import { TicketVerifier } from '../auth/tickets.ts';
import type { TicketClaims, TicketRefusalReason, TicketRequest, TicketResult } from '../auth/tickets.ts';
import { systemClock } from '../env/index.ts';
import type { Clock } from '../env/index.ts';
import { DfsError } from '../errors/index.ts';
import type { ErrorCode } from '../errors/index.ts';
import { deadlineSignal, decodeJson, FrameReader, FrameWriter, peerIdInAddr, trySendNow } from '../net/index.ts';
import type { DfsPeer, RemotePeer, Stream } from '../net/index.ts';
import type { ChunkStore, PendingPut } from '../storage/index.ts';
import {
  CHUNK_FRAME_MAX_BYTES,
  CHUNK_MAX_BYTES,
  CHUNK_PROTOCOL,
  ChunkTargetError,
  chunkRequestSchema,
  DEFAULT_MAX_INBOUND_STREAMS,
  DEFAULT_MAX_INFLIGHT_BYTES,
  DEFAULT_PEER_INFLIGHT_SHARE,
  DEFAULT_TRANSFER_TIMEOUT_MS,
  encodeHeader,
  payloadFrames,
  refusalOf,
  TRANSFER_DEADLINE_FACTOR,
} from './chunk-protocol.ts';
import type { ChunkRequest, DeleteAnswer, GetRequest, PutAnswer, PutRequest } from './chunk-protocol.ts';
import { receiptSigner } from '../net/receipt.ts';
import type { Receipt, ReceiptSigner } from '../net/receipt.ts';

export interface ChunkServiceOptions {
  readonly peer: DfsPeer;
  /**
   * The peer's identity key (the one `peer` runs with): signs this node's receipts for the chunks
   * puts leave here (src/net/receipt.ts). Checked against `peer` at construction: a node that
   * cannot sign receipts cannot acknowledge any put.
   */
  readonly privateKey: PrivateKey;
  readonly store: ChunkStore;
  /**
   * Where a put is forwarded: the address (a multiaddr ending /p2p/<peerId>) of a storage node
   * this node knows, from the node list the masters sent; undefined for any other peer id, which
   * is then never dialled (the put's own copy is kept, and its answer is ERR_PIPELINE naming
   * `/p2p/<peerId>`, failedCode ERR_FORBIDDEN). Default: nobody is known (no forwarding).
   */
  readonly resolveNode?: (peerId: string) => string | undefined;
  /** Brings the node list up to date (asks the masters now); tried once when a pipeline names an unknown node. */
  readonly refreshNodes?: () => Promise<void>;
  /** Verifies put payloads as they arrive; loaded at start when absent. */
  readonly blake3?: Blake3;
  /**
   * Chunk bytes this node holds for transfers under way (puts being received, gets being
   * sent). A put or get that would exceed it is refused with ERR_OVERLOADED before any payload
   * moves. Default 256 MiB.
   */
  readonly maxInflightBytes?: number;
  /**
   * Bytes of that budget one remote peer may hold at once (its puts and gets together), so one
   * peer, slow or hostile, cannot starve the others: past it, that peer's transfer is refused
   * with ERR_OVERLOADED saying so, while other peers proceed. A peer with nothing in flight may
   * always start one transfer (within the whole budget), so any chunk size works. Default: a
   * quarter of maxInflightBytes.
   */
  readonly maxInflightBytesPerPeer?: number;
  /**
   * Bound on a whole transfer's payload (a put's receipt, a get's sending), on top of the idle
   * timeout per read and write: a peer trickling bytes cannot hold a reservation for longer.
   * Default: 4 transfer timeouts (2 minutes).
   */
  readonly transferDeadlineMs?: number;
  /** Largest chunk accepted (at most, and by default, the 64 MiB hard cap; never above maxInflightBytes). */
  readonly maxChunkBytes?: number;
  /** Whether a peer may delete chunks (the masters). Default: nobody. */
  readonly canDelete?: (peerId: string) => boolean;
  /** Bound on each read and write of a transfer: an idle timeout. Default 30 s. */
  readonly transferTimeoutMs?: number;
  /** Chunk streams one connection may have open at once. Default 64. */
  readonly maxInboundStreams?: number;
  /** Bound on connecting to the next node of a pipeline. Default 5 s (or the transfer timeout if lower). */
  readonly dialTimeoutMs?: number;
  /** Streams to the next nodes of pipelines, kept between forwarded puts. Default: a new pool. */
  readonly downstream?: ChunkStreams;
  /**
   * Where the cluster's public key is read, on every put, get and delete (a shared holder: the
   * control loop fills it from the masters' answers). While it holds none, those requests are
   * refused with ERR_UNAVAILABLE. Default: an empty holder (nothing but `has` is served).
   */
  readonly clusterKey?: ClusterKeySource;
  /**
   * Whether `peerId` is a storage node of the masters' node list: only such a peer may forward a
   * put whose ticket names another bearer (a pipeline's later hop). Default: resolveNode knows it.
   */
  readonly knowsNode?: (peerId: string) => boolean;
  /** Tickets' expiry is checked against this clock. Default: the system's. */
  readonly clock?: Clock;
  /**
   * Told of every request answered: its op, 'ok' or the refusal's code, payload bytes moved and
   * seconds from header to answer (metrics; src/node/node-metrics.ts). Default: nobody.
   */
  readonly observe?: (op: ChunkRequest['op'], outcome: string, bytes: number, seconds: number) => void;
  /** Verified tickets kept (see TicketVerifier). Default 1024. */
  readonly ticketCacheSize?: number;
}

/** The cluster's public key once known (see ClusterKey in src/node/cluster-key.ts). */
export interface ClusterKeySource {
  readonly publicKey: PublicKey | undefined;
}

export interface ChunkServiceStats {
  /** Puts acknowledged (this node and every later one stored the chunk). */
  puts: number;
  /** Payload bytes received by puts. */
  bytesIn: number;
  /** Payload bytes sent on to the next node of a pipeline. */
  bytesForwarded: number;
  /** Gets answered in full. */
  gets: number;
  /** Payload bytes sent by gets. */
  bytesOut: number;
  /** Has requests answered. */
  hasRequests: number;
  /** Chunks deleted. */
  chunksDeleted: number;
  /** Stored chunks a delete left in place because of its fence (a newer put, or the floor). */
  chunksKept: number;
  /** Requests answered with an error (or abandoned), by error code. */
  refusals: Partial<Record<ErrorCode, number>>;
  /** Bytes reserved now by transfers under way (see maxInflightBytes). */
  inflightBytes: number;
  /** Remote peers with bytes reserved now. */
  inflightPeers: number;
  /** Streams being served now. */
  activeStreams: number;
  /** Streams served since start (a get stream may have carried many gets). */
  streamsServed: number;
}

const DEFAULT_DIAL_TIMEOUT_MS = 5_000;
/** Put streams pause their sender when this much unread payload waits (more than one frame). */
const PUT_READ_HIGH_WATER_BYTES = 2 * CHUNK_FRAME_MAX_BYTES;
/** After answering, how long the remote may take to close its side before the stream is reset. */
const LINGER_MAX_MS = 5_000;
/** Store lookups in flight at once for one has request. */
const HAS_CONCURRENCY = 64;
/** Idle hashers kept for reuse. */
const HASHER_POOL_MAX = 16;

/**
 * Serves `/dfs/chunk/1.0.0` on a storage node (protocol: src/node/chunk-protocol.ts).
 *
 * A put is streamed, not stored-then-forwarded: each payload frame is hashed, written to a temp
 * file (ChunkStore.beginPut), and sent on to the next pipeline node as it arrives, and the next
 * frame is read only once that node's stream took it, so backpressure runs from the last node
 * back to the client. When the whole payload has arrived and hashes to the id, the payload's
 * end is sent downstream (an end frame:
 * streams to the next nodes are kept for later puts, ChunkStreams; the next node stores only
 * after that end, so corrupt bytes are never stored anywhere: on a mismatch the downstream
 * stream is reset) and this node stores its copy while the later ones store theirs;
 * the answer waits for both. A downstream failure never costs this node its copy: it still
 * stores, then answers ERR_PIPELINE naming the target that failed. A kept stream that the next
 * node had reset (it does so to quiet streams) is not that node failing: OutboundPut sends the
 * payload so far again on a new stream, once, so a healthy node is never blamed for it.
 *
 * Fences: every put carries the leader's fence, forwarded down the pipeline and recorded by the
 * store under the chunk's lock even when the chunk was already here; a delete carries the fence
 * of the GC decision and leaves a chunk in place (`kept`) when a later put was accepted, so a GC
 * racing a re-upload of the same bytes never removes what a put just acknowledged.
 *
 * Closed cluster: a pipeline names peer ids, and the next one is dialled only at the address the
 * masters' node list gives for it (`resolveNode`); a peer id the list does not name is never
 * contacted (this node keeps its copy and answers ERR_PIPELINE, failedCode ERR_FORBIDDEN).
 *
 * Tickets: every put, get and delete must carry a chunk ticket the masters signed (src/auth/
 * tickets.ts), checked here with the cluster's public key alone (`clusterKey`, learnt from the
 * masters; until then those requests are ERR_UNAVAILABLE) before anything else is done: signature,
 * expiry on this node's clock, operation, chunk id, bearer = the Noise-authenticated remote, and
 * for put and delete the fence. A put forwarded down a pipeline carries its first hop's ticket:
 * its bearer is not the forwarding node, which is accepted for it only if it is a storage node of
 * the masters' list (`knowsNode`). Verified tickets are cached (TicketVerifier): a ticket seen
 * again costs a map lookup, not a signature check.
 *
 * Receipts: once its copy is stored and the fence recorded, a node signs a receipt (its identity
 * key over chunk id and fence, src/net/receipt.ts); the answer carries its own and, after them,
 * the downstream's, whose shape OutboundPut checked first (exactly the rest of the pipeline, a
 * receipt from each): an ack without one makes that node the failed target. Signatures are
 * checked by the client and the leader, not at every hop (see #put).
 *
 * Bounded: each connection may open `maxInboundStreams` chunk streams; chunk bytes held by
 * transfers under way are capped by `maxInflightBytes`, and one remote peer's by
 * `maxInflightBytesPerPeer` (both refused with ERR_OVERLOADED before any payload moves, the
 * latter saying it is that peer's own load); every read and write has the transfer (idle)
 * timeout, and a transfer's whole payload `transferDeadlineMs`, so a peer trickling bytes cannot
 * keep a reservation; each loop is bounded by the
 * announced size (payload frames carry at least one byte). A malformed header or frame gets an
 * ERR_PROTOCOL answer when the stream still allows one, and only that stream is closed.
 */
export class ChunkService {
  readonly stats: ChunkServiceStats = {
    puts: 0,
    bytesIn: 0,
    bytesForwarded: 0,
    gets: 0,
    bytesOut: 0,
    hasRequests: 0,
    chunksDeleted: 0,
    chunksKept: 0,
    refusals: {},
    inflightBytes: 0,
    inflightPeers: 0,
    activeStreams: 0,
    streamsServed: 0,
  };
  readonly #peer: DfsPeer;
  readonly #store: ChunkStore;
  readonly #sign: ReceiptSigner;
  readonly #resolveNode: (peerId: string) => string | undefined;
  readonly #refreshNodes: (() => Promise<void>) | undefined;
  readonly #maxInflightBytes: number;
  readonly #maxInflightBytesPerPeer: number;
  readonly #transferDeadlineMs: number;
  /** Bytes reserved per remote peer (only peers with some). */
  readonly #inflightByPeer = new Map<string, number>();
  readonly #maxChunkBytes: number;
  readonly #canDelete: (peerId: string) => boolean;
  readonly #transferTimeoutMs: number;
  readonly #maxInboundStreams: number;
  readonly #dialTimeoutMs: number;
  readonly #streams = new Set<Stream>();
  readonly #running = new Set<Promise<void>>();
  readonly #idleHashers: Blake3Hasher[] = [];
  /** Streams to the next nodes of pipelines, kept open between forwarded puts. */
  readonly #downstream: ChunkStreams;
  readonly #clusterKey: ClusterKeySource;
  readonly #knowsNode: (peerId: string) => boolean;
  readonly #clock: Clock;
  readonly #ticketCacheSize: number | undefined;
  /** Checks tickets with the cluster key it was made for; made when the key is first seen. */
  #tickets: TicketVerifier | undefined;
  /** Fires at stop: every wait of every transfer ends then. */
  readonly #stopping = new AbortController();
  #blake3: Blake3 | undefined;
  #state: 'new' | 'started' | 'stopped' = 'new';

  readonly #observer: ChunkServiceOptions['observe'];

  constructor(options: ChunkServiceOptions) {
    this.#peer = options.peer;
    this.#store = options.store;
    this.#blake3 = options.blake3;
    if (options.privateKey === undefined) {
      throw new DfsError('ERR_INVALID_ARGUMENT', 'a chunk service needs its peer\'s privateKey to sign receipts');
    }
    const keyOwner = peerIdFromPrivateKey(options.privateKey).toString();
    if (keyOwner !== options.peer.peerId) {
      throw new DfsError('ERR_INVALID_ARGUMENT', `the receipt key belongs to ${keyOwner}, not to this node's peer ${options.peer.peerId}`);
    }
    this.#sign = receiptSigner(options.privateKey);
    this.#observer = options.observe;
    this.#resolveNode = options.resolveNode ?? (() => undefined);
    this.#refreshNodes = options.refreshNodes;
    this.#maxInflightBytes = positive('maxInflightBytes', options.maxInflightBytes ?? DEFAULT_MAX_INFLIGHT_BYTES);
    this.#maxInflightBytesPerPeer = positive(
      'maxInflightBytesPerPeer',
      options.maxInflightBytesPerPeer ?? Math.max(1, Math.floor(this.#maxInflightBytes * DEFAULT_PEER_INFLIGHT_SHARE)),
    );
    const maxChunkBytes = positive('maxChunkBytes', options.maxChunkBytes ?? CHUNK_MAX_BYTES);
    if (maxChunkBytes > CHUNK_MAX_BYTES) {
      throw new DfsError('ERR_INVALID_ARGUMENT', `maxChunkBytes must be at most ${CHUNK_MAX_BYTES}, got ${maxChunkBytes}`);
    }
    // A chunk larger than the whole budget could never be taken: it is too large, not a "later".
    this.#maxChunkBytes = Math.min(maxChunkBytes, this.#maxInflightBytes);
    this.#canDelete = options.canDelete ?? (() => false);
    this.#transferTimeoutMs = positive('transferTimeoutMs', options.transferTimeoutMs ?? DEFAULT_TRANSFER_TIMEOUT_MS);
    this.#transferDeadlineMs = positive('transferDeadlineMs', options.transferDeadlineMs ?? this.#transferTimeoutMs * TRANSFER_DEADLINE_FACTOR);
    this.#maxInboundStreams = positive('maxInboundStreams', options.maxInboundStreams ?? DEFAULT_MAX_INBOUND_STREAMS);
    this.#dialTimeoutMs = positive('dialTimeoutMs', options.dialTimeoutMs ?? Math.min(DEFAULT_DIAL_TIMEOUT_MS, this.#transferTimeoutMs));
    this.#downstream = options.downstream ?? new ChunkStreams();
    this.#clusterKey = options.clusterKey ?? { publicKey: undefined };
    const resolveNode = this.#resolveNode;
    this.#knowsNode = options.knowsNode ?? ((peerId) => resolveNode(peerId) !== undefined);
    this.#clock = options.clock ?? systemClock;
    this.#ticketCacheSize = options.ticketCacheSize;
  }

  async start(): Promise<void> {
    if (this.#state !== 'new') throw new DfsError('ERR_INVALID_ARGUMENT', `chunk service already ${this.#state}`);
    this.#blake3 ??= await loadBlake3();
    this.#state = 'started';
    await this.#peer.handle(CHUNK_PROTOCOL, (stream, remote) => this.#track(stream, remote), {
      maxInboundStreams: this.#maxInboundStreams,
    });
  }

  /** Stops serving: no new streams, streams under way are reset; waits for their handlers. */
  async stop(): Promise<void> {
    if (this.#state !== 'started') {
      this.#state = 'stopped';
      return;
    }
    this.#state = 'stopped';
    this.#stopping.abort(new DfsError('ERR_ABORTED', 'the chunk service is stopping'));
    this.#downstream.close();
    try {
      await this.#peer.unhandle(CHUNK_PROTOCOL);
    } catch {
      // The peer is already stopped: nothing more will arrive.
    }
    for (const stream of this.#streams) stream.abort(new DfsError('ERR_ABORTED', 'the chunk service is stopping'));
    await Promise.allSettled([...this.#running]);
  }

  /** Resolves once no stream is being served (streams that arrive meanwhile are waited for too). */
  async idle(): Promise<void> {
    // Each round waits for the handlers running at its start; bounded, new work cannot pin it.
    for (let round = 0; round < 1000 && this.#running.size > 0; round++) await Promise.allSettled([...this.#running]);
  }

  #track(stream: Stream, remote: RemotePeer): Promise<void> {
    if (this.#state !== 'started') {
      stream.abort(new DfsError('ERR_ABORTED', 'the chunk service is stopped'));
      return Promise.resolve();
    }
    this.#streams.add(stream);
    this.stats.activeStreams++;
    this.stats.streamsServed++;
    const served = this.#serve(stream, remote).finally(() => {
      this.#streams.delete(stream);
      this.stats.activeStreams--;
      this.#running.delete(served);
    });
    this.#running.add(served);
    return served;
  }

  async #serve(stream: Stream, remote: RemotePeer): Promise<void> {
    const reader = new FrameReader(stream, {
      maxFrameBytes: CHUNK_FRAME_MAX_BYTES,
      highWaterBytes: PUT_READ_HIGH_WATER_BYTES,
      // The reader aborts the stream right after: say why first, if the stream takes it at once.
      onOversizedFrame: (err) => trySendNow(stream, encodeHeader(refusalOf(err))),
    });
    const writer = new FrameWriter(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
    const exchange: Exchange = { stream, reader, writer, remote, answered: false, putEndedByFrame: false };
    let current: ObservedRequest | undefined;
    try {
      const frame = await reader.read({ signal: this.#deadline() });
      if (frame === undefined) throw new DfsError('ERR_PROTOCOL', `${CHUNK_PROTOCOL}: stream ended before a request header`);
      let request = chunkRequestSchema.parse(decodeJson(frame));
      // A get stream may carry more gets, and a put stream whose payload ended with an end frame
      // more puts, one after another (bounded: each is a whole exchange, and the loop ends when
      // the client closes, goes quiet, or sends another kind of request).
      for (;;) {
        current = { op: request.op, startedMs: performance.now(), bytesOut: this.stats.bytesOut };
        switch (request.op) {
          case 'put':
            await this.#answer(exchange, await this.#put(exchange, request));
            this.stats.puts++;
            break;
          case 'get':
            await this.#get(exchange, request);
            this.stats.gets++;
            break;
          case 'has':
            await this.#answer(exchange, { ok: true, present: await this.#has(request.ids) });
            this.stats.hasRequests++;
            break;
          case 'delete':
            await this.#answer(exchange, await this.#delete(request.ids, request.fence, request.ticket, remote));
            break;
        }
        this.#observe(current, 'ok', request.op === 'put' ? request.size : this.stats.bytesOut - current.bytesOut);
        current = undefined;
        if (request.op !== 'get' && !(request.op === 'put' && exchange.putEndedByFrame)) break;
        exchange.answered = false; // that exchange is complete: a refusal of the next can be sent
        const next = await this.#nextRequest(exchange, request.op);
        if (next === undefined) break;
        request = next;
      }
    } catch (err) {
      this.#countRefusal(err);
      if (current) this.#observe(current, err instanceof DfsError ? err.code : 'ERR_INTERNAL', 0);
      reader.release();
      // Nobody to answer (reset by the remote, aborted by the reader or by stop), or an answer
      // already under way: the reset tells the remote.
      if (exchange.answered || stream.status !== 'open' || stream.writeStatus !== 'writable') {
        stream.abort(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      try {
        await this.#answer(exchange, refusalOf(err));
      } catch (answerError) {
        stream.abort(answerError instanceof Error ? answerError : new Error(String(answerError)));
        return;
      }
    } finally {
      reader.release();
    }
    if (stream.status !== 'open') return; // reset (a quiet get stream): nothing to finish
    await this.#finishStream(exchange);
  }

  /**
   * The next request on a get stream, or on a put stream whose last payload ended with an end
   * frame: undefined when the client closed its side, reset the stream, or stayed quiet for the
   * transfer timeout (then the stream is reset: a client that comes back sees it gone and opens
   * another). None of these is a refusal. A request of another kind is refused.
   */
  async #nextRequest(exchange: Exchange, op: 'get' | 'put'): Promise<GetRequest | PutRequest | undefined> {
    let frame: Uint8ArrayList | undefined;
    try {
      frame = await exchange.reader.read({ signal: this.#deadline() });
    } catch (err) {
      exchange.stream.abort(err instanceof Error ? err : new Error(String(err)));
      return undefined;
    }
    if (frame === undefined) return undefined;
    const request = chunkRequestSchema.parse(decodeJson(frame));
    if (request.op !== op) throw new DfsError('ERR_PROTOCOL', `${CHUNK_PROTOCOL}: only ${op}s may follow a ${op} on one stream, got ${request.op}`);
    return request;
  }

  /** Writes the answer header (the first frame this side sends). */
  async #answer(exchange: Exchange, header: object): Promise<void> {
    exchange.answered = true;
    await exchange.writer.write(encodeHeader(header), { signal: this.#deadline() });
  }

  /**
   * Closes our write side, then gives the remote a moment to close its own (a client that got
   * a refusal mid-payload resets the stream); anything it still sends is left unread, with the
   * stream paused so it stops sending, and the stream is reset after the linger.
   */
  async #finishStream({ stream, writer }: Exchange): Promise<void> {
    try {
      await writer.close({ signal: this.#deadline() });
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (stream.readStatus === 'readable') stream.pause();
    const closed = await closedWithin(stream, Math.min(LINGER_MAX_MS, this.#transferTimeoutMs));
    if (!closed) stream.abort(new DfsError('ERR_TIMEOUT', `${CHUNK_PROTOCOL}: the remote did not close the stream after the answer`));
  }

  async #put(exchange: Exchange, request: PutRequest): Promise<PutAnswer> {
    const { id, size, fence, pipeline } = request;
    const { ticket, share } = await this.#admitPut(request, exchange.remote.peerId);
    if (size > this.#maxChunkBytes) {
      throw new DfsError('ERR_CHUNK_TOO_LARGE', `chunk ${id} has ${size} bytes; this node takes at most ${this.#maxChunkBytes}`);
    }
    if (pipeline.includes(this.#peer.peerId) || new Set(pipeline).size !== pipeline.length) {
      throw new DfsError('ERR_PROTOCOL', `put of chunk ${id}: the pipeline names a node twice, or this node (${this.#peer.peerId}) itself`);
    }
    const release = this.#reserve(size, `put of chunk ${id}`, share);
    // However steadily the bytes trickle in, the whole payload has this long.
    const whole = this.#wholeTransfer(`put of chunk ${id} (${size} bytes)`);
    const next = pipeline[0];
    // Only a storage node from the masters' list is ever dialled, at the address the list gives.
    let nextAddr = next === undefined ? undefined : this.#addressOf(next);
    if (next !== undefined && nextAddr === undefined && this.#refreshNodes) {
      await this.#refreshNodes(); // a node that registered since our last heartbeat
      nextAddr = this.#addressOf(next);
    }
    const failedTarget = nextAddr ?? `/p2p/${next}`;
    let hasher: Blake3Hasher | undefined;
    let opening: Promise<OutboundPut | DfsError> | undefined;
    let downstream: OutboundPut | undefined;
    let downstreamError: DfsError | undefined =
      next !== undefined && nextAddr === undefined
        ? new DfsError('ERR_FORBIDDEN', `pipeline target ${next} is not a storage node this node knows (the masters' node list does not name it); it was not contacted`)
        : undefined;
    let pending: PendingPut | undefined;
    try {
      // Every node hashes the bytes as they arrive and writes them to a temp file as they
      // arrive (ChunkStore.beginPut), so the verdict is known the moment the payload ends, later
      // nodes can store while this one does, and storing is left with only the fsync and the
      // rename; no frame is kept past its turn (they die young: less GC).
      hasher = await this.#takeHasher();
      pending = await this.#store.beginPut(id, size, { fence });
      // Connecting to the next node overlaps with the first payload frames arriving.
      if (nextAddr !== undefined) {
        const signal = this.#deadline(this.#dialTimeoutMs, whole.signal);
        // The ticket travels on unchanged: the next node checks it too (all but its bearer).
        const header = { id, size, fence, pipeline: pipeline.slice(1), ticket };
        // Receipts: only the answer's shape is checked here (exactly the rest of the pipeline, a
        // receipt from each), not the signatures. The signatures matter where a copy is counted:
        // the leader checks every receipt before a chunk counts as stored (proveStored, commit),
        // and the client checks them all before it reports the chunk stored, retrying a bad ack
        // away from the nodes that could have spoilt it (ReceiptError). Checking here as well
        // would only move blame one hop: 3 more signature checks per chunk on a 3-node pipeline.
        const options = { signal, timeoutMs: this.#dialTimeoutMs, pool: this.#downstream, verifyReceipts: false };
        opening = OutboundPut.open(this.#peer, nextAddr, header, options).catch((err: unknown) =>
          asDfsError(err),
        );
      }
      let received = 0;
      // Every payload frame carries at least one byte of at most `size`: at most size + 1 reads.
      for (;;) {
        const frame: Uint8ArrayList | undefined = await exchange.reader.read({ signal: this.#deadline(this.#transferTimeoutMs, whole.signal) });
        exchange.putEndedByFrame = frame?.byteLength === 0;
        if (frame === undefined || frame.byteLength === 0) break; // the end: closed, or an end frame
        if (received + frame.byteLength > size) {
          throw new DfsError('ERR_PROTOCOL', `put of chunk ${id}: more than the ${size} bytes announced (${received + frame.byteLength} so far)`);
        }
        // The frame's parts as they arrived: hashed, written (copied into the file's staging
        // buffer) and forwarded without a copy.
        for (const part of frame) {
          hasher.update(part);
          pending.append(part);
        }
        received += frame.byteLength;
        this.stats.bytesIn += frame.byteLength;
        if (opening && downstream === undefined && downstreamError === undefined) {
          const opened = await opening;
          if (opened instanceof DfsError) downstreamError = opened;
          else downstream = opened;
        }
        if (downstream) {
          try {
            await downstream.write(frame, this.#deadline(this.#transferTimeoutMs, whole.signal));
            this.stats.bytesForwarded += frame.byteLength;
          } catch (err) {
            if (whole.signal.aborted) throw err; // our own deadline (or stop): not the next node's fault
            // Stop forwarding but keep receiving: this node's copy is still wanted.
            downstreamError = asDfsError(err);
            downstream = undefined;
          }
        }
      }
      whole.done(); // the payload is in: storing and the later nodes' acks have their own bounds
      if (received < size) throw new DfsError('ERR_PROTOCOL', `put of chunk ${id}: ${received} of the ${size} bytes announced, then the end`);
      const actual = hasher.digestHex();
      if (actual !== id) throw new DfsError('ERR_CHUNK_CORRUPT', `put of chunk ${id}: the bytes hash to ${actual}`);
      if (opening && downstream === undefined && downstreamError === undefined) {
        const opened = await opening; // a zero-byte chunk: nothing was forwarded yet
        if (opened instanceof DfsError) downstreamError = opened;
        else downstream = opened;
      }
      // Verified: let the later nodes store (the payload's end reaches them) while we do. Their
      // ack is checked by `finish`: exactly the rest of the pipeline, each with its own receipt.
      const acked = downstream
        ?.finish(this.#deadline(this.#transferTimeoutMs * pipeline.length))
        .then((answer) => answer, (err: unknown) => asDfsError(err));
      let receipt: Receipt;
      try {
        // The bytes were hashed as they came and checked above. The fence is recorded even when
        // the chunk was already here: a delete decided before it must not remove what this ack
        // vouches for. The receipt is signed only once both are done (fsync included).
        const stored = pending.commit();
        pending = undefined; // committing: on failure the store leaves nothing behind itself
        await stored;
        receipt = await this.#sign(id, fence);
      } catch (err) {
        downstream?.abort(err); // an aborted put never sends again: the later nodes store nothing
        throw err;
      }
      const answer = acked ? await acked : undefined;
      if (answer instanceof DfsError) downstreamError = answer;
      if (downstreamError !== undefined) throw pipelineError(failedTarget, downstreamError);
      if (next === undefined) return { ok: true, stored: [this.#peer.peerId], receipts: [receipt] };
      const rest = answer as PutAnswer;
      return { ok: true, stored: [this.#peer.peerId, ...rest.stored], receipts: [receipt, ...rest.receipts] };
    } finally {
      whole.done();
      release();
      // Not committed (a refusal, a corrupt payload, a failure): the temp file goes, before the
      // answer does. (abort never throws.)
      await pending?.abort();
      if (hasher) this.#returnHasher(hasher);
      // Whatever happened, the downstream stream is finished or reset (abort after finish is a no-op).
      void opening?.then((opened) => {
        if (!(opened instanceof DfsError)) opened.abort(new DfsError('ERR_ABORTED', `put of chunk ${id} failed upstream`));
      });
    }
  }

  /**
   * The address to forward to for `peerId`: from the node list (resolveNode), and only when it
   * names that very peer; undefined otherwise.
   */
  #addressOf(peerId: string): string | undefined {
    const addr = this.#resolveNode(peerId);
    return addr !== undefined && peerIdInAddr(addr) === peerId ? addr : undefined;
  }

  /**
   * A bound on one whole transfer (transferDeadlineMs), on top of the idle timeout of each read
   * and write; also fires at stop. `done()` clears it.
   */
  #wholeTransfer(what: string): { readonly signal: AbortSignal; done(): void } {
    const controller = new AbortController();
    const ms = this.#transferDeadlineMs;
    const timer = setTimeout(() => controller.abort(new DfsError('ERR_TIMEOUT', `${what} took longer than ${ms} ms, the bound on one transfer`)), ms);
    timer.unref();
    return { signal: AbortSignal.any([controller.signal, this.#stopping.signal]), done: () => clearTimeout(timer) };
  }

  async #get(exchange: Exchange, request: GetRequest): Promise<void> {
    const { id } = request;
    const claims = this.#checkTicket(request.ticket, { now: this.#clock.now(), op: 'get', chunkId: id, bearerPeerId: exchange.remote.peerId });
    const info = await this.#store.info(id);
    if (info === undefined) throw new DfsError('ERR_CHUNK_NOT_FOUND', `chunk ${id} is not on this node`);
    const release = this.#reserve(info.size, `get of chunk ${id}`, shareOf(claims, exchange.remote.peerId));
    const whole = this.#wholeTransfer(`get of chunk ${id} (${info.size} bytes)`);
    try {
      // A range is cut from a copy verified here: its reader cannot check it. A whole chunk is
      // sent as stored: the client verifies every byte against the id (end to end, the check
      // that matters), reports a bad copy (badReplica: the leader has it verified here, which
      // quarantines it), and the scrubber re-hashes stored chunks in the background. Hashing it
      // here too cost the nodes ~0.45 CPU s per GiB read.
      const wholeChunk = request.offset === undefined && request.length === undefined;
      const bytes = await this.#store.get(id, { verify: !wholeChunk });
      const offset = request.offset ?? 0;
      if (offset > bytes.byteLength) {
        throw new DfsError('ERR_INVALID_ARGUMENT', `offset ${offset} is past the end of chunk ${id} (${bytes.byteLength} bytes)`);
      }
      const length = request.length ?? bytes.byteLength - offset;
      if (offset + length > bytes.byteLength) {
        throw new DfsError('ERR_INVALID_ARGUMENT', `range ${offset}+${length} is past the end of chunk ${id} (${bytes.byteLength} bytes)`);
      }
      await this.#answer(exchange, { ok: true, size: length });
      for (const frame of payloadFrames([bytes.subarray(offset, offset + length)])) {
        await exchange.writer.write(frame, { signal: this.#deadline(this.#transferTimeoutMs, whole.signal) });
        this.stats.bytesOut += frame.byteLength;
      }
    } finally {
      whole.done();
      release();
    }
  }

  async #has(ids: readonly string[]): Promise<boolean[]> {
    const present: boolean[] = [];
    for (let at = 0; at < ids.length; at += HAS_CONCURRENCY) {
      present.push(...(await Promise.all(ids.slice(at, at + HAS_CONCURRENCY).map((id) => this.#store.has(id)))));
    }
    return present;
  }

  /** Each id's fence check and removal are one step under the store's per-id lock. */
  async #delete(ids: readonly string[], fence: number, ticket: string | undefined, remote: RemotePeer): Promise<DeleteAnswer> {
    const unique = new Set(ids);
    // Every id must be the ticket's (the leader's, with the delete's fence) before any is removed.
    const now = this.#clock.now();
    for (const id of unique) this.#checkTicket(ticket, { now, op: 'delete', chunkId: id, bearerPeerId: remote.peerId, fence });
    if (unique.size === 0) this.#verifier(); // no ids, nothing to check a ticket against: still not before the key
    if (!this.#canDelete(remote.peerId)) throw new DfsError('ERR_FORBIDDEN', `peer ${remote.peerId} may not delete chunks on this node`);
    let deleted = 0;
    const kept: string[] = [];
    for (const id of unique) {
      const outcome = await this.#store.delete(id, { fence });
      if (outcome === 'deleted') deleted++;
      else if (outcome === 'kept') kept.push(id);
    }
    this.stats.chunksDeleted += deleted;
    this.stats.chunksKept += kept.length;
    return { ok: true, deleted, kept };
  }

  /**
   * Checks a put's ticket; returns it. A ticket for 'put' or 'replicate' whose bearer is the remote
   * is a first hop (a client's put, a node's copy); one naming another bearer is a put forwarded
   * down a pipeline, accepted only from a storage node of the masters' list (asked again once, for
   * a node that registered since the last heartbeat), with every other claim still checked.
   */
  async #admitPut(request: PutRequest, remote: string): Promise<{ ticket: string; share: string }> {
    const checks = { op: ['put', 'replicate'] as const, chunkId: request.id, bearerPeerId: remote, fence: request.fence };
    const direct = this.#verifier().verify(request.ticket, { ...checks, now: this.#clock.now() });
    if (direct.ok) return { ticket: request.ticket!, share: shareOf(direct.claims, remote) };
    if (direct.reason !== 'wrong-bearer') throw ticketRefusal(direct);
    let known = this.#knowsNode(remote);
    if (!known && this.#refreshNodes) {
      await this.#refreshNodes();
      known = this.#knowsNode(remote);
    }
    if (!known) {
      throw ticketRefusal(direct, `; a put with another peer's ticket is taken only from a storage node forwarding it down a pipeline, and ${remote} is not one this node knows`);
    }
    const claims = this.#checkTicket(request.ticket, { ...checks, now: this.#clock.now(), bearerVouched: true });
    return { ticket: request.ticket!, share: shareOf(claims, remote) };
  }

  /** Throws the refusal for a ticket that does not allow `request` (see ticketRefusal); else its claims. */
  #checkTicket(ticket: string | undefined, request: TicketRequest): TicketClaims {
    const result = this.#verifier().verify(ticket, request);
    if (!result.ok) throw ticketRefusal(result);
    return result.claims;
  }

  /** The ticket checker for the cluster key; ERR_UNAVAILABLE before a master has told us the key. */
  #verifier(): TicketVerifier {
    const publicKey = this.#clusterKey.publicKey;
    if (publicKey === undefined) {
      throw new DfsError('ERR_UNAVAILABLE', 'this node has not heard the cluster key from a master yet, so it cannot check chunk tickets; retry shortly or use another node');
    }
    if (this.#tickets?.publicKey !== publicKey) {
      this.#tickets = new TicketVerifier({ publicKey, ...(this.#ticketCacheSize === undefined ? {} : { cacheSize: this.#ticketCacheSize }) });
    }
    return this.#tickets;
  }

  /** Verified tickets cached now (a ticket presented again costs a lookup, not a signature check). */
  get cachedTickets(): number {
    return this.#tickets?.size ?? 0;
  }

  /** Bytes reserved now by transfers for `peerId`. */
  inflightBytesOf(peerId: string): number {
    return this.#inflightByPeer.get(peerId) ?? 0;
  }

  /**
   * Reserves `bytes` of the in-flight budget for a transfer of `peerId` (a share: a peer id, or
   * `user NAME` for a user's ticket; see shareOf), or refuses with
   * ERR_OVERLOADED: when the peer already holds some and would go past its share (the message
   * says it is that peer's own load), or when the whole budget would be exceeded. Returns the release.
   */
  #reserve(bytes: number, what: string, peerId: string): () => void {
    const mine = this.#inflightByPeer.get(peerId) ?? 0;
    if (mine > 0 && mine + bytes > this.#maxInflightBytesPerPeer) {
      throw new DfsError(
        'ERR_OVERLOADED',
        `${what} (${bytes} bytes) refused: ${peerId.startsWith('user ') ? `this ${peerId}` : `this peer (${peerId})`} has ${mine} bytes in flight on this node, its share is ${this.#maxInflightBytesPerPeer} of ${this.#maxInflightBytes}; wait for its transfers to finish`,
      );
    }
    if (this.stats.inflightBytes + bytes > this.#maxInflightBytes) {
      throw new DfsError(
        'ERR_OVERLOADED',
        `${what} (${bytes} bytes) refused: ${this.stats.inflightBytes} of ${this.#maxInflightBytes} in-flight bytes in use (${mine} by this peer)`,
      );
    }
    this.stats.inflightBytes += bytes;
    if (mine === 0) this.stats.inflightPeers++;
    this.#inflightByPeer.set(peerId, mine + bytes);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.stats.inflightBytes -= bytes;
      const left = (this.#inflightByPeer.get(peerId) ?? bytes) - bytes;
      if (left > 0) this.#inflightByPeer.set(peerId, left);
      else {
        this.#inflightByPeer.delete(peerId);
        this.stats.inflightPeers--;
      }
    };
  }

  async #takeHasher(): Promise<Blake3Hasher> {
    const hasher = this.#idleHashers.pop();
    if (hasher) return hasher.reset();
    const blake3 = this.#blake3;
    if (!blake3) throw new DfsError('ERR_INTERNAL', 'chunk service not started');
    return (await blake3.createHasher()).reset();
  }

  #returnHasher(hasher: Blake3Hasher): void {
    if (this.#idleHashers.length < HASHER_POOL_MAX) this.#idleHashers.push(hasher.reset());
  }

  #countRefusal(err: unknown): void {
    const code: ErrorCode = err instanceof DfsError ? err.code : 'ERR_INTERNAL';
    this.stats.refusals[code] = (this.stats.refusals[code] ?? 0) + 1;
  }

  #observe(request: ObservedRequest, outcome: string, bytes: number): void {
    this.#observer?.(request.op, outcome, bytes, (performance.now() - request.startedMs) / 1000);
  }

  /** A signal for one wait: the transfer (idle) timeout unless told otherwise, or `bound` (default: stop()). */
  #deadline(timeoutMs = this.#transferTimeoutMs, bound: AbortSignal = this.#stopping.signal): AbortSignal {
    return deadlineSignal(timeoutMs, bound);
  }
}

/**
 * Whose share of the in-flight budget a transfer counts against: the user a ticket was issued
 * for (one user's many peer ids hold one share), else the peer (a node's copy, a master).
 */
function shareOf(claims: TicketClaims, peerId: string): string {
  return claims.user === undefined ? peerId : `user ${claims.user}`;
}

/** The request being served, for the observer. */
interface ObservedRequest {
  readonly op: ChunkRequest['op'];
  readonly startedMs: number;
  /** stats.bytesOut when it began: a get's payload is the difference at its end. */
  readonly bytesOut: number;
}

interface Exchange {
  readonly stream: Stream;
  readonly reader: FrameReader;
  readonly writer: FrameWriter;
  readonly remote: RemotePeer;
  /** The answer header was (being) written: an error now can only reset the stream. */
  answered: boolean;
  /** The last put's payload ended with an end frame (not by closing): another put may follow. */
  putEndedByFrame: boolean;
}

/**
 * ERR_PIPELINE for a failure of `next` (its address, or /p2p/<id> when it has none here) or of a
 * node after it (whose address the answer carries).
 */
function pipelineError(next: string, err: DfsError): ChunkTargetError {
  if (err instanceof ChunkTargetError && err.code === 'ERR_PIPELINE') {
    return new ChunkTargetError('ERR_PIPELINE', err.message, err.failedTarget, { failedCode: err.failedCode });
  }
  return new ChunkTargetError('ERR_PIPELINE', `pipeline target ${next} failed: ${err.code}: ${err.message}`, next, { failedCode: err.code });
}

/** Who is at fault decides the code: no valid ticket at all, an expired one, or one for something else. */
const UNAUTHENTICATED_REASONS: ReadonlySet<TicketRefusalReason> = new Set(['missing', 'malformed', 'signature']);

/**
 * The error for a refused ticket: ERR_UNAUTHENTICATED when there is no valid ticket (none,
 * malformed, not the cluster's signature), ERR_TOKEN_EXPIRED, else ERR_FORBIDDEN.
 */
function ticketRefusal(result: Extract<TicketResult, { ok: false }>, more = ''): DfsError {
  const code = UNAUTHENTICATED_REASONS.has(result.reason) ? 'ERR_UNAUTHENTICATED' : result.code;
  return new DfsError(code, `${result.message}${more}`);
}

function asDfsError(err: unknown): DfsError {
  if (err instanceof DfsError) return err;
  return new DfsError('ERR_INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
}

function positive(name: string, value: number): number {
  if (!(Number.isSafeInteger(value) && value > 0)) throw new DfsError('ERR_INVALID_ARGUMENT', `${name} must be a positive integer, got ${value}`);
  return value;
}


/** Whether the stream closes (both sides, or reset) within `ms`. */
function closedWithin(stream: Stream, ms: number): Promise<boolean> {
  if (stream.status !== 'open' && stream.status !== 'closing') return Promise.resolve(true);
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => {
      stream.removeEventListener('close', onClose);
      resolve(false);
    }, ms);
    const onClose = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    stream.addEventListener('close', onClose, { once: true });
  });
}
