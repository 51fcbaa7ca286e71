import { type Blake3, type Chunk, CHUNKER_ID, type ChunkerParams, chunkStream, DEFAULT_CHUNKER_PARAMS } from '../chunker/index.ts';
import { randomBytes } from 'node:crypto';
import { DfsError, isDfsError } from '../errors/index.ts';
import { type Manifest, MAX_PLACE_CHUNKS, parsePlacements, STORED_ACKS_PER_REQUEST, type StoredAck } from '../meta/index.ts';
import { type DfsPeer, peerIdInAddr } from '../net/index.ts';
import { BufferPool } from './buffer-pool.ts';
import { ChunkStreams, putChunk, ReceiptError } from '../protocol/chunk-client.ts';
import type { Receipt } from '../net/receipt.ts';
import type { ReleasingSource } from './file-source.ts';
import type { MetaClient } from '../meta/meta-client.ts';

export interface PutOptions {
  readonly peer: DfsPeer;
  readonly meta: MetaClient;
  readonly blake3: Blake3;
  readonly params?: ChunkerParams;
  /**
   * Chunk uploads in flight at once. Default 3: 1 GiB puts here took 20.4-22.1 s at 133-135 MB
   * peak RSS with 3, 20.8-22.9 s at 135-146 MB with 4 (CPU-bound: more in flight buys nothing).
   * Measured again on 2 cores (issue 16): a byte bound of 6-12 MiB with 4-16 uploads and the
   * next batch's placement asked for ahead cost 2-4 CPU s/GiB more over client and nodes
   * (41-44.5 against 38-40) and up to 193 MB peak RSS, for no rate gain.
   */
  readonly concurrency?: number;
  /**
   * Chunks per placement request. Default: as many average chunks as make 4 MiB (2 at the
   * default 2 MiB), so the chunks held while a placement is asked for weigh the same whatever
   * the average; at most 16 MiB of largest chunks, and at most 64.
   */
  readonly batchSize?: number;
  /** Create missing parent directories. Default true. */
  readonly parents?: boolean;
  /** Fail with ERR_EXISTS instead of replacing an existing file. */
  readonly ifAbsent?: boolean;
  /** Called as bytes of the source are handled (uploaded or found already stored). */
  readonly onProgress?: (bytes: number) => void;
  /**
   * The whole file's size, when known (a local file's): sent with the placement requests so the
   * leader refuses a put over the owner's quota (ERR_QUOTA) before any chunk is sent.
   */
  readonly fileBytes?: number;
}

export interface PutResult {
  readonly size: number;
  readonly chunks: number;
  /** Bytes actually sent to storage nodes (each once, whatever the replication factor). */
  readonly sentBytes: number;
  /** Bytes not sent because the cluster already had those chunks. */
  readonly dedupedBytes: number;
  readonly blake3: string;
}


/** A chunk to upload: its bytes copied into a pooled buffer, given back once the upload ends. */
interface Upload {
  readonly id: string;
  readonly length: number;
  readonly pieces: readonly Uint8Array[];
  readonly buffer: Uint8Array;
}

/** Upload attempts per chunk before the put fails. */
const MAX_ATTEMPTS = 4;
/**
 * Failures another node or placement cannot cure: the bytes are not the id's, or the masters'
 * ticket was refused as no ticket at all (a leader that issues none) or for this caller.
 */
const NOT_RETRIED: ReadonlySet<string> = new Set(['ERR_CHUNK_CORRUPT', 'ERR_UNAUTHENTICATED', 'ERR_FORBIDDEN']);
/** Bytes of average chunks per placement request (PutOptions.batchSize). */
const BATCH_BYTES = 4 * 1024 * 1024;
/** Bytes of the largest chunks a batch may hold at most (PutOptions.batchSize). */
const MAX_BATCH_BYTES = 16 * 1024 * 1024;
/**
 * Chunks a batch may hold at most, far below what one place request may name (MAX_PLACE_CHUNKS):
 * placements are also what keeps the upload alive at the leader (its chunks safe from GC), so
 * they must keep coming while small chunks upload; 1,024 tiny chunks took longer than a test
 * cluster's GC grace.
 */
const MAX_BATCH_CHUNKS = 64;
/** Receipts sent ahead in one proveStored request while the upload goes on. */
const PROOFS_PER_BATCH = 256;

/**
 * Stores a stream as a file: chunk + hash (one pass), placement requests in batches (chunks the
 * cluster has are skipped), chunk uploads along replication pipelines with at most `concurrency`
 * in flight, then the manifest committed through Raft — the file appears whole or not at all.
 * A target that fails is excluded and the chunk placed again; if the replication factor cannot
 * be met the put fails and nothing is committed. Memory: at most `batchSize + concurrency`
 * chunks are held. A `source` with a `release` method (a ReleasingSource, e.g. PooledFileReads)
 * is told after each chunk which bytes it may reuse.
 */
export async function putFile(source: AsyncIterable<Uint8Array>, path: string, o: PutOptions): Promise<PutResult> {
  // Streams to the first node of each pipeline, kept open from one chunk to the next.
  const streams = new ChunkStreams();
  try {
    return await storeFile(source, path, o, streams);
  } finally {
    streams.close();
  }
}

async function storeFile(source: AsyncIterable<Uint8Array>, path: string, o: PutOptions, streams: ChunkStreams): Promise<PutResult> {
  const params = o.params ?? DEFAULT_CHUNKER_PARAMS;
  const concurrency = o.concurrency ?? 3;
  // 4 MiB of average chunks, but never more than 16 MiB of the largest (what a batch may hold
  // while its placement is asked for) nor more than MAX_BATCH_CHUNKS.
  const batchByBytes = Math.min(Math.round(BATCH_BYTES / params.avgSize), Math.floor(MAX_BATCH_BYTES / params.maxSize));
  const batchSize =
    o.batchSize === undefined || !Number.isFinite(o.batchSize)
      ? Math.min(MAX_BATCH_CHUNKS, Math.max(1, batchByBytes))
      : Math.min(MAX_PLACE_CHUNKS, Math.max(1, Math.floor(o.batchSize)));
  // Names this upload to the leader: its chunks are kept from GC until it commits.
  const uploadId = randomBytes(12).toString('hex');
  const whole = await o.blake3.createHasher();
  whole.reset();
  const manifestChunks: Array<[string, number]> = [];
  /** The nodes' signed receipts for each uploaded chunk: the proof of its copies. */
  const stored = new Map<string, { fence: number; receipts: Receipt[] }>();
  const proofs = new ProofSender(o.meta, uploadId);
  const seen = new Set<string>(); // chunk ids met so far in this file (dedup within the file)
  const inflight = new Set<Promise<void>>();
  let failure: unknown;
  let size = 0;
  let sentBytes = 0;
  let dedupedBytes = 0;
  let batch: Upload[] = [];
  // Chunks wait here (batch, then upload) for longer than the reads they came in should live:
  // copied out, the reads die young and the copies' memory is reused (see BufferPool).
  // Idle buffers kept: two of the largest chunk (the rest of a window's buffers are in use).
  const pool = new BufferPool(2 * params.maxSize);

  // Every placement request names the file (the leader checks write permission on it) and its
  // size when known (the owner's quota).
  const place = (chunks: ReadonlyArray<{ id: string; size: number }>, exclude?: string[]) =>
    o.meta.leaderRequest({
      type: 'place',
      chunks: chunks.map((c) => ({ id: c.id, size: c.size })),
      ...(exclude !== undefined ? { exclude } : {}),
      uploadId,
      path,
      ...(o.fileBytes !== undefined ? { fileBytes: o.fileBytes } : {}),
    });

  // `fence`: the leader's, from the placement; nodes record it so no GC delete decided before
  // the placement can remove what this put stores (see FenceClock). `ticket`: the placement's
  // permission for this peer to put the chunk, checked by every node of the pipeline.
  const upload = async (chunk: Upload, targets: string[], fence: number, ticket: string): Promise<void> => {
    const exclude = new Set<string>();
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await putChunk(o.peer, targets, chunk.id, chunk.pieces, fence, ticket, { pool: streams });
        stored.set(chunk.id, { fence, receipts: r.receipts });
        proofs.add({ id: chunk.id, fence, receipts: r.receipts });
        sentBytes += chunk.length;
        o.onProgress?.(chunk.length);
        return;
      } catch (err) {
        if (!isDfsError(err) || NOT_RETRIED.has(err.code) || attempt >= MAX_ATTEMPTS) throw err;
        // An expired ticket (a put that waited long for its turn) is no fault of the node: a new
        // placement brings a new one. Any other failure excludes the node that failed; a bad
        // receipt, every node that could have spoilt it (ReceiptError: forwarding nodes do not
        // check signatures, so a later node's bad receipt may be its own or a forwarder's doing).
        if (err.code !== 'ERR_TOKEN_EXPIRED') {
          const failed = err instanceof ReceiptError ? err.suspects : [(err as DfsError & { failedTarget?: string }).failedTarget ?? targets[0]!];
          for (const addr of failed) {
            const failedId = peerIdInAddr(addr);
            if (failedId) exclude.add(failedId);
          }
        }
        const [again] = parsePlacements(await place([{ id: chunk.id, size: chunk.length }], [...exclude]));
        if (!again || !('targets' in again)) {
          if (again && 'existing' in again) return; // someone else stored it meanwhile
          throw err;
        }
        targets = [...again.targets];
        fence = again.fence;
        ticket = again.ticket;
      }
    }
  };

  const flush = async (): Promise<void> => {
    const fresh = batch;
    batch = [];
    if (fresh.length === 0) return;
    const placements = parsePlacements(await place(fresh.map((c) => ({ id: c.id, size: c.length }))));
    for (const [i, chunk] of fresh.entries()) {
      const p = placements[i];
      if (!p || p.id !== chunk.id) throw new DfsError('ERR_PROTOCOL', 'placement answer does not match the request');
      if ('existing' in p) {
        dedupedBytes += chunk.length;
        o.onProgress?.(chunk.length);
        pool.give(chunk.buffer);
        continue;
      }
      while (inflight.size >= concurrency) await Promise.race(inflight);
      if (failure) throw failure;
      const task: Promise<void> = upload(chunk, [...p.targets], p.fence, p.ticket)
        // Reused only after a success: the node's answer means every byte left. After a failure,
        // frames queued under the reset stream may still point into the buffer: it is dropped.
        .then(() => pool.give(chunk.buffer))
        .catch((err: unknown) => {
          failure ??= err;
        })
        .finally(() => inflight.delete(task));
      inflight.add(task);
    }
  };

  const release = 'release' in source ? (source as ReleasingSource).release.bind(source) : undefined;
  for await (const chunk of chunkStream(source, { blake3: o.blake3, params })) {
    for (const piece of chunk.pieces) whole.update(piece);
    manifestChunks.push([chunk.id, chunk.length]);
    size += chunk.length;
    if (seen.has(chunk.id)) {
      dedupedBytes += chunk.length; // repeated within this file
      o.onProgress?.(chunk.length);
    } else {
      seen.add(chunk.id);
      batch.push(copyOut(chunk, pool));
    }
    // Done with this chunk's bytes (copied or skipped): a releasing source may reuse them.
    release?.(chunk.offset + chunk.length);
    if (batch.length >= batchSize) await flush();
    if (failure) throw failure;
  }
  await flush();
  await Promise.all(inflight);
  if (failure) throw failure;
  const manifest: Manifest = { chunker: CHUNKER_ID, params, size, blake3: whole.digestHex(), chunks: manifestChunks };
  const commit = (last: StoredAck[]) =>
    o.meta.write({ op: 'commitFile', path, manifest, parents: o.parents ?? true, ifAbsent: o.ifAbsent ?? false }, { stored: last, uploadId });
  try {
    await commit(await proofs.flush());
  } catch (err) {
    // A leader that took over since the proofs went ahead does not know them: prove it all again.
    if (!isDfsError(err, 'ERR_UNDER_REPLICATED') || stored.size === 0) throw err;
    for (const [id, { fence, receipts }] of stored) proofs.add({ id, fence, receipts });
    await commit(await proofs.flush());
  }
  return { size, chunks: manifestChunks.length, sentBytes, dedupedBytes, blake3: manifest.blake3 };
}

/**
 * Sends an upload's receipts to the leader as they come (`proveStored`, a batch at a time, one
 * request in flight), so no single request grows with the file; `flush` sends all but the last
 * batch and hands that one back for the commit itself. A failed batch is kept and sent again.
 */
class ProofSender {
  readonly #meta: MetaClient;
  readonly #uploadId: string;
  #pending: StoredAck[] = [];
  #sending: Promise<void> | undefined;

  constructor(meta: MetaClient, uploadId: string) {
    this.#meta = meta;
    this.#uploadId = uploadId;
  }

  add(ack: StoredAck): void {
    this.#pending.push(ack);
    if (this.#pending.length >= PROOFS_PER_BATCH && !this.#sending) {
      this.#sending = this.#send().finally(() => {
        this.#sending = undefined;
      });
    }
  }

  /** Sends what is waiting except one last batch, which it returns (for the commit). */
  async flush(): Promise<StoredAck[]> {
    await this.#sending;
    while (this.#pending.length > STORED_ACKS_PER_REQUEST) await this.#send(true);
    return this.#pending.splice(0);
  }

  async #send(strict = false): Promise<void> {
    const batch = this.#pending.splice(0, STORED_ACKS_PER_REQUEST);
    try {
      await this.#meta.leaderRequest({ type: 'proveStored', uploadId: this.#uploadId, acks: batch });
    } catch (err) {
      this.#pending.unshift(...batch); // sent again later, or with the commit
      if (strict) throw err;
    }
  }
}

function copyOut(chunk: Chunk, pool: BufferPool): Upload {
  const buffer = pool.take(chunk.length);
  let at = 0;
  for (const piece of chunk.pieces) {
    buffer.set(piece, at);
    at += piece.byteLength;
  }
  return { id: chunk.id, length: chunk.length, pieces: [buffer.subarray(0, chunk.length)], buffer };
}
