import type { Blake3 } from '../chunker/index.ts';
import { DfsError, isDfsError } from '../errors/index.ts';
import type { Entry, Manifest } from '../meta/index.ts';
import { type DfsPeer, peerIdInAddr, schema } from '../net/index.ts';
import { MAX_TICKET_CHARS } from '../auth/tickets.ts';
import { BufferPool } from './buffer-pool.ts';
import { ChunkGetSession } from '../protocol/chunk-client.ts';
import type { MetaClient } from '../meta/meta-client.ts';

export interface GetOptions {
  readonly peer: DfsPeer;
  readonly meta: MetaClient;
  readonly blake3: Blake3;
  /**
   * Chunks fetched at once, counting the one being waited for (the reorder window). Default 2:
   * on loopback 2, 3 and 4 moved a 1 GiB file equally fast and 2 held the least; a network with
   * a longer round trip wants more.
   */
  readonly concurrency?: number;
  /**
   * Bound on the bytes of the chunks in the window: a fetch starts only while the window holds
   * less (one chunk always may), so memory stays bounded whatever the chunk sizes. Default 8 MiB.
   */
  readonly maxWindowBytes?: number;
  readonly onProgress?: (bytes: number) => void;
  /** How long to wait for a chunk's locations when the leader does not know them yet. Default 10 s. */
  readonly locateTimeoutMs?: number;
}

/**
 * Where the bytes go, in order: one call per chunk with its pieces. `write` resolves once the
 * sink is done with `pieces` (written out, or copied): their memory is reused for a later chunk
 * right after, so a sink must not keep them.
 */
export interface ByteSink {
  write(pieces: readonly Uint8Array[]): Promise<void>;
}

/** A fetched chunk: its bytes, and the pooled buffer they sit in (given back once written). */
interface Fetched {
  readonly pieces: Uint8Array[];
  readonly buffer: Uint8Array | undefined;
}

/**
 * Reads a file: its manifest, the chunks' holders, then chunks fetched in parallel (each
 * verified against its id by the chunk client; on any failure the next holder is tried and a
 * bad replica reported), written to `sink` in order through a window of at most `concurrency`
 * chunks and `maxWindowBytes`.
 * The whole-file BLAKE3 is checked at the end: ERR_CHUNK_CORRUPT if it differs.
 */
export async function getFile(path: string, sink: ByteSink, o: GetOptions): Promise<{ size: number; chunks: number; manifest: Manifest }> {
  const entry: Entry = await o.meta.stat(path);
  if (entry.kind !== 'file') throw new DfsError('ERR_IS_DIR', `${path} is a directory`);
  const manifest = entry.manifest;
  const locations = new Locations(path, manifest, o);
  await locations.locate([...new Set(manifest.chunks.map(([id]) => id))]);
  const session = new ChunkGetSession(o.peer);
  try {
    const digest = await readInOrder(manifest, locations, sink, session, o);
    if (digest !== manifest.blake3) {
      throw new DfsError('ERR_CHUNK_CORRUPT', `${path}: the reassembled file hashes to ${digest}, not ${manifest.blake3}`);
    }
  } finally {
    session.close();
  }
  return { size: manifest.size, chunks: manifest.chunks.length, manifest };
}

/** Fetches the chunks through the window and writes them to `sink` in order; returns the file's BLAKE3. */
async function readInOrder(manifest: Manifest, locations: Locations, sink: ByteSink, session: ChunkGetSession, o: GetOptions): Promise<string> {
  const whole = await o.blake3.createHasher();
  whole.reset();
  const window = new Map<number, Promise<Fetched>>();
  const concurrency = o.concurrency ?? 2;
  const maxWindowBytes = o.maxWindowBytes ?? 8 * 1024 * 1024;
  // Enough idle buffers for a full window: after the first chunks, nothing is allocated.
  const context: FetchContext = { load: new HolderLoad(), pool: new BufferPool(maxWindowBytes + manifest.params.maxSize), session, locations };
  let next = 0;
  let windowBytes = 0;
  const startFetch = () => {
    const i = next++;
    const [id, length] = manifest.chunks[i]!;
    windowBytes += length;
    const p = fetchChunk(i, id, length, context, o);
    p.catch(() => {}); // observed when its turn comes; no unhandled rejection meanwhile
    window.set(i, p);
  };
  const roomFor = (i: number): boolean => {
    if (next >= manifest.chunks.length || next >= i + concurrency) return false;
    return next === i || windowBytes + manifest.chunks[next]![1] <= maxWindowBytes;
  };
  for (let i = 0; i < manifest.chunks.length; i++) {
    while (roomFor(i)) startFetch();
    const { pieces, buffer } = await window.get(i)!; // fetchChunk checked their length against the manifest's
    window.delete(i);
    const length = manifest.chunks[i]![1];
    windowBytes -= length;
    for (const piece of pieces) whole.update(piece);
    await sink.write(pieces);
    if (buffer) context.pool.give(buffer);
    o.onProgress?.(length);
  }
  return whole.digestHex();
}

/** Ids in one locate request (the protocol's bound). */
const LOCATE_BATCH = 1024;

/** A `locate` answer: each chunk's holders and the get ticket to read it with. */
const locateAnswerSchema = schema.array(
  schema.object({
    id: schema.string({ pattern: /^[0-9a-f]{64}$/ }),
    holders: schema.array(schema.string({ maxLength: 1024 }), { maxLength: 1024 }),
    // Read defensively: without one, the node's refusal (ERR_UNAUTHENTICATED) says what is missing.
    ticket: schema.optional(schema.string({ maxLength: MAX_TICKET_CHARS })),
  }),
  { maxLength: LOCATE_BATCH },
);

/** Where a chunk is, and the ticket to get it with. */
interface Location {
  readonly holders: readonly string[];
  readonly ticket: string;
}

/**
 * The file's chunks' holders and get tickets, from the leader (`locate`, naming the file: the
 * leader checks read permission and that the ids are its chunks). Tickets expire (60 s by
 * default): a get refused ERR_TOKEN_EXPIRED re-locates the chunks from there on (`refresh`), one
 * request for many chunks, shared by the fetches that hit it at once.
 */
class Locations {
  readonly #path: string;
  readonly #manifest: Manifest;
  readonly #o: GetOptions;
  readonly #byId = new Map<string, Location>();
  #refreshing: Promise<void> | undefined;

  constructor(path: string, manifest: Manifest, o: GetOptions) {
    this.#path = path;
    this.#manifest = manifest;
    this.#o = o;
  }

  get(id: string): Location | undefined {
    return this.#byId.get(id);
  }

  /** Locates `ids`, waiting (up to locateTimeoutMs) for chunks the leader does not know yet. */
  async locate(ids: readonly string[]): Promise<void> {
    const deadline = performance.now() + (this.#o.locateTimeoutMs ?? 10_000);
    let missing = [...ids];
    for (let pauseMs = 100; missing.length > 0; pauseMs = Math.min(pauseMs * 2, 1_000)) {
      for (let i = 0; i < missing.length; i += LOCATE_BATCH) await this.#ask(missing.slice(i, i + LOCATE_BATCH));
      missing = missing.filter((id) => !this.#byId.has(id));
      // Right after a leader change the nodes' reports are still arriving: wait a little.
      if (missing.length === 0 || performance.now() > deadline) break;
      await new Promise((r) => setTimeout(r, pauseMs));
    }
    if (missing.length > 0) throw new DfsError('ERR_CHUNK_NOT_FOUND', `no storage node holds chunk ${missing[0]} (${missing.length} chunk(s) unavailable)`);
  }

  /** New tickets (and holders) for the chunks from manifest index `from` on, one batch. */
  refresh(from: number): Promise<void> {
    this.#refreshing ??= (async () => {
      const ids = new Set<string>();
      for (let i = from; i < this.#manifest.chunks.length && ids.size < LOCATE_BATCH; i++) ids.add(this.#manifest.chunks[i]![0]);
      await this.#ask([...ids]);
    })().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #ask(ids: readonly string[]): Promise<void> {
    const found = locateAnswerSchema.parse(await this.#o.meta.leaderRequest({ type: 'locate', ids: [...ids], path: this.#path }));
    for (const f of found) if (f.holders.length > 0) this.#byId.set(f.id, { holders: f.holders, ticket: f.ticket ?? '' });
  }
}

/**
 * Fetches in flight per holder: each chunk is read from its least busy holder first, so reads
 * spread over every node that has the file instead of piling on whichever the leader lists first.
 */
export class HolderLoad {
  readonly #inflight = new Map<string, number>();

  /** `holders` least busy first; ties broken by rotating on `salt`, so equal holders share evenly. */
  order(holders: readonly string[], salt: number): string[] {
    const n = holders.length;
    const rotated = holders.map((_, k) => holders[(k + salt) % n]!);
    return rotated.sort((a, b) => this.#count(a) - this.#count(b)); // stable: rotation breaks ties
  }

  start(addr: string): void {
    this.#inflight.set(addr, this.#count(addr) + 1);
  }

  end(addr: string): void {
    const left = this.#count(addr) - 1;
    if (left > 0) this.#inflight.set(addr, left);
    else this.#inflight.delete(addr);
  }

  #count(addr: string): number {
    return this.#inflight.get(addr) ?? 0;
  }
}

/** What the fetches of one file share. */
interface FetchContext {
  readonly load: HolderLoad;
  readonly pool: BufferPool;
  readonly session: ChunkGetSession;
  readonly locations: Locations;
}

/** Chunk `index` of the manifest (`id`, `length` bytes), from its least busy holder that has it whole. */
async function fetchChunk(index: number, id: string, length: number, { load, pool, session, locations }: FetchContext, o: GetOptions): Promise<Fetched> {
  const errors: string[] = [];
  let refreshed = false;
  const holders = load.order(locations.get(id)?.holders ?? [], index);
  for (let h = 0; h < holders.length; h++) {
    const addr = holders[h]!;
    load.start(addr);
    let buffer: Uint8Array | undefined;
    let ticket = '';
    try {
      // A node announcing another size than the manifest's is refused before any byte is copied.
      const into = (size: number): Uint8Array => {
        if (size !== length) throw new DfsError('ERR_CHUNK_CORRUPT', `chunk ${id} has ${size} bytes, the manifest says ${length}`);
        return (buffer = pool.take(size));
      };
      ticket = locations.get(id)?.ticket ?? '';
      const pieces = await session.get(addr, id, ticket, { blake3: o.blake3, into });
      return { pieces, buffer };
    } catch (err) {
      if (buffer) pool.give(buffer);
      if (isDfsError(err, 'ERR_TOKEN_EXPIRED') && !refreshed) {
        // A long read outlived the ticket: new ones for this chunk on (unless a fetch beside this
        // one already got them), then this holder again.
        refreshed = true;
        // A refresh under way for an earlier batch may not cover this chunk: then one of its own.
        for (let i = 0; i < 2 && locations.get(id)?.ticket === ticket; i++) await locations.refresh(index);
        h--;
        continue;
      }
      errors.push(`${addr.slice(-12)}: ${isDfsError(err) ? err.code : String(err)}`);
      if (isDfsError(err, 'ERR_CHUNK_CORRUPT') || isDfsError(err, 'ERR_CHUNK_NOT_FOUND')) {
        const nodeId = peerIdInAddr(addr);
        if (nodeId) void o.meta.leaderRequest({ type: 'badReplica', id, nodeId }).catch(() => {});
      }
    } finally {
      load.end(addr);
    }
  }
  throw new DfsError('ERR_CHUNK_NOT_FOUND', `no replica of chunk ${id} could be read (${errors.join('; ')})`);
}
