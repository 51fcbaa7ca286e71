import type { Blake3 } from '../chunker/index.ts';
import { DfsError, isDfsError } from '../errors/index.ts';
import type { Entry, Manifest } from '../meta/index.ts';
import { type DfsPeer, peerIdInAddr } from '../net/index.ts';
import { getChunk } from './chunk-client.ts';
import type { MetaClient } from './meta-client.ts';

export interface GetOptions {
  readonly peer: DfsPeer;
  readonly meta: MetaClient;
  readonly blake3: Blake3;
  /** Chunks fetched ahead of the one being written (the reorder window). Default 8. */
  readonly concurrency?: number;
  readonly onProgress?: (bytes: number) => void;
  /** How long to wait for a chunk's locations when the leader does not know them yet. Default 10 s. */
  readonly locateTimeoutMs?: number;
}

/** Where the bytes go, in order; `write` resolves when the sink can take more (backpressure). */
export interface ByteSink {
  write(bytes: Uint8Array): Promise<void>;
}

/**
 * Reads a file: its manifest, the chunks' holders, then chunks fetched in parallel (each
 * verified against its id by the chunk client; on any failure the next holder is tried and a
 * bad replica reported), written to `sink` in order through a window of `concurrency` chunks.
 * The whole-file BLAKE3 is checked at the end: ERR_CHUNK_CORRUPT if it differs.
 */
export async function getFile(path: string, sink: ByteSink, o: GetOptions): Promise<{ size: number; chunks: number; manifest: Manifest }> {
  const entry: Entry = await o.meta.stat(path);
  if (entry.kind !== 'file') throw new DfsError('ERR_IS_DIR', `${path} is a directory`);
  const manifest = entry.manifest;
  const holders = new Map<string, string[]>();
  await locate([...new Set(manifest.chunks.map(([id]) => id))], holders, o);
  const whole = await o.blake3.createHasher();
  whole.reset();
  const window = new Map<number, Promise<Uint8Array>>();
  const concurrency = o.concurrency ?? 8;
  let next = 0;
  const startFetch = () => {
    const i = next++;
    const [id, length] = manifest.chunks[i]!;
    const p = fetchChunk(id, length, holders, o);
    p.catch(() => {}); // observed when its turn comes; no unhandled rejection meanwhile
    window.set(i, p);
  };
  for (let i = 0; i < manifest.chunks.length; i++) {
    while (next < manifest.chunks.length && next < i + concurrency) startFetch();
    const bytes = await window.get(i)!;
    window.delete(i);
    whole.update(bytes);
    await sink.write(bytes);
    o.onProgress?.(bytes.length);
  }
  const digest = whole.digestHex();
  if (digest !== manifest.blake3) {
    throw new DfsError('ERR_CHUNK_CORRUPT', `${path}: the reassembled file hashes to ${digest}, not ${manifest.blake3}`);
  }
  return { size: manifest.size, chunks: manifest.chunks.length, manifest };
}

async function locate(ids: string[], into: Map<string, string[]>, o: GetOptions): Promise<void> {
  const deadline = performance.now() + (o.locateTimeoutMs ?? 10_000);
  let missing = ids;
  for (let pauseMs = 100; missing.length > 0; pauseMs = Math.min(pauseMs * 2, 1_000)) {
    for (let i = 0; i < missing.length; i += 1024) {
      const found = (await o.meta.leaderRequest({ type: 'locate', ids: missing.slice(i, i + 1024) })) as Array<{ id: string; holders: string[] }>;
      for (const f of found) if (f.holders.length > 0) into.set(f.id, f.holders);
    }
    missing = missing.filter((id) => !into.has(id));
    // Right after a leader change the nodes' reports are still arriving: wait a little.
    if (missing.length === 0 || performance.now() > deadline) break;
    await new Promise((r) => setTimeout(r, pauseMs));
  }
  if (missing.length > 0) throw new DfsError('ERR_CHUNK_NOT_FOUND', `no storage node holds chunk ${missing[0]} (${missing.length} chunk(s) unavailable)`);
}

async function fetchChunk(id: string, length: number, holders: Map<string, string[]>, o: GetOptions): Promise<Uint8Array> {
  const errors: string[] = [];
  for (const addr of holders.get(id) ?? []) {
    try {
      const bytes = await getChunk(o.peer, addr, id, { blake3: o.blake3 });
      if (bytes.length !== length) throw new DfsError('ERR_CHUNK_CORRUPT', `chunk ${id} has ${bytes.length} bytes, the manifest says ${length}`);
      return bytes;
    } catch (err) {
      errors.push(`${addr.slice(-12)}: ${isDfsError(err) ? err.code : String(err)}`);
      if (isDfsError(err, 'ERR_CHUNK_CORRUPT') || isDfsError(err, 'ERR_CHUNK_NOT_FOUND')) {
        const nodeId = peerIdInAddr(addr);
        if (nodeId) void o.meta.leaderRequest({ type: 'badReplica', id, nodeId }).catch(() => {});
      }
    }
  }
  throw new DfsError('ERR_CHUNK_NOT_FOUND', `no replica of chunk ${id} could be read (${errors.join('; ')})`);
}
