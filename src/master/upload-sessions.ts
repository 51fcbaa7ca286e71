import { DfsError } from '../errors/index.ts';

/**
 * Uploads under way: every chunk a put was placed (to be stored, or found existing) is promised
 * to it and kept from GC while it is alive — renewed by each placement, ended by its commit,
 * expired after `graceMs` of silence. An upload opened for a peer (`owner`) counts against that
 * peer's cap, so one peer cannot hold GC off an unbounded number of chunk sets.
 */
export const DEFAULT_MAX_UPLOADS_PER_PEER = 64;

export class UploadSessions {
  readonly #uploads = new Map<string, { lastActiveMs: number; chunks: Set<string>; owner: string | undefined }>();
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
  promise(uploadId: string, chunkIds: Iterable<string>, owner?: string): void {
    if (owner !== undefined && !this.#uploads.has(uploadId) && this.openBy(owner) >= this.#maxPerOwner) {
      throw new DfsError(
        'ERR_OVERLOADED',
        `peer ${owner} has ${this.#maxPerOwner} uploads open, the most one peer may: finish or abandon some (an abandoned one closes after ${Math.round(this.#graceMs / 1000)} s of silence)`,
      );
    }
    const upload = this.#uploads.get(uploadId) ?? { lastActiveMs: 0, chunks: new Set<string>(), owner };
    upload.lastActiveMs = this.#now();
    for (const id of chunkIds) upload.chunks.add(id);
    this.#uploads.set(uploadId, upload);
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
