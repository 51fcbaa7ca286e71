import { DfsError } from '../errors/index.ts';
import { MAX_MANIFEST_CHUNKS } from '../meta/index.ts';

/**
 * Uploads under way: every chunk a put was placed (to be stored, or found existing) is promised
 * to it and kept from GC while it is alive — renewed by each placement, ended by its commit,
 * expired after `graceMs` of silence. An upload opened for a peer (`owner`) counts against that
 * peer's cap, so one peer cannot hold GC off an unbounded number of chunk sets.
 */
export const DEFAULT_MAX_UPLOADS_PER_PEER = 64;
/** Chunks one upload may have promised: the largest manifest's (src/meta/manifest.ts). */
export const MAX_CHUNKS_PER_UPLOAD = MAX_MANIFEST_CHUNKS;

export class UploadSessions {
  readonly #uploads = new Map<string, { lastActiveMs: number; chunks: Set<string>; owner: string | undefined; user: string | undefined; bytes: number }>();
  readonly #now: () => number;
  readonly #graceMs: number;
  readonly #maxPerOwner: number;

  constructor(now: () => number, graceMs: number, maxPerOwner = DEFAULT_MAX_UPLOADS_PER_PEER) {
    this.#now = now;
    this.#graceMs = graceMs;
    this.#maxPerOwner = maxPerOwner;
  }

  /**
   * Promises these chunks to `uploadId` (and keeps the upload alive). A new upload of `owner`
   * (a peer id) beyond its cap of open ones: ERR_OVERLOADED, nothing promised.
   */
  promise(uploadId: string, chunkIds: Iterable<string>, owner?: string, placed?: { readonly user: string; readonly sizes: ReadonlyMap<string, number> }): void {
    // An expired upload is a new one: its old promises lapsed (GC may have taken those chunks),
    // and it counts against its owner's cap again.
    const known = this.alive(uploadId) ? this.#uploads.get(uploadId) : undefined;
    if (owner !== undefined && known === undefined && this.openBy(owner) >= this.#maxPerOwner) {
      throw new DfsError(
        'ERR_OVERLOADED',
        `peer ${owner} has ${this.#maxPerOwner} uploads open, the most one peer may: finish or abandon some (an abandoned one closes after ${Math.round(this.#graceMs / 1000)} s of silence)`,
      );
    }
    const upload = known ?? { lastActiveMs: 0, chunks: new Set<string>(), owner, user: placed?.user, bytes: 0 };
    // Only ids not promised yet count against the cap: a commit re-promises the chunks its
    // upload placed and proved, and a manifest may name one chunk many times.
    const fresh = new Set<string>();
    for (const id of chunkIds) if (!upload.chunks.has(id)) fresh.add(id);
    if (upload.chunks.size + fresh.size > MAX_CHUNKS_PER_UPLOAD) {
      throw new DfsError('ERR_OVERLOADED', `an upload may hold at most ${MAX_CHUNKS_PER_UPLOAD} chunks (the largest file's); start another upload`);
    }
    upload.lastActiveMs = this.#now();
    for (const id of fresh) {
      upload.chunks.add(id);
      upload.bytes += placed?.sizes.get(id) ?? 0;
    }
    if (placed !== undefined) upload.user ??= placed.user;
    this.#uploads.set(uploadId, upload);
  }

  /** Bytes placed for `uploadId` so far (each chunk counted once), 0 for an unknown upload. */
  bytesOf(uploadId: string): number {
    return this.alive(uploadId) ? this.#uploads.get(uploadId)!.bytes : 0;
  }

  /**
   * Bytes placed for `user`'s uploads still alive, but for `except`: what a quota check counts
   * beside committed usage, so uploads kept open without a commit cannot grow past the quota.
   */
  pendingBytesOf(user: string, except?: string): number {
    let n = 0;
    for (const [id, u] of this.#uploads) if (u.user === user && id !== except && this.alive(id)) n += u.bytes;
    return n;
  }

  /** Uploads of `owner` still alive (expired ones are dropped on the way). */
  openBy(owner: string): number {
    let n = 0;
    for (const [id, u] of this.#uploads) {
      if (u.owner !== owner) continue;
      if (this.alive(id)) n++;
      else this.#uploads.delete(id);
    }
    return n;
  }

  alive(uploadId: string): boolean {
    const u = this.#uploads.get(uploadId);
    return u !== undefined && this.#now() - u.lastActiveMs < this.#graceMs;
  }

  end(uploadId: string): void {
    this.#uploads.delete(uploadId);
  }

  /** Whether an upload still alive was promised this chunk. */
  promised(chunkId: string): boolean {
    for (const [uploadId, u] of this.#uploads) if (u.chunks.has(chunkId) && this.alive(uploadId)) return true;
    return false;
  }

  /** Every chunk promised to an alive upload; expired uploads are dropped on the way. */
  promisedChunks(): Set<string> {
    const out = new Set<string>();
    for (const [uploadId, u] of this.#uploads) {
      if (!this.alive(uploadId)) this.#uploads.delete(uploadId);
      else for (const id of u.chunks) out.add(id);
    }
    return out;
  }
}
