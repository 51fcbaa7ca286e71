/**
 * Uploads under way: every chunk a put was placed (to be stored, or found existing) is promised
 * to it and kept from GC while it is alive — renewed by each placement, ended by its commit,
 * expired after `graceMs` of silence.
 */
export class UploadSessions {
  readonly #uploads = new Map<string, { lastActiveMs: number; chunks: Set<string> }>();
  readonly #now: () => number;
  readonly #graceMs: number;

  constructor(now: () => number, graceMs: number) {
    this.#now = now;
    this.#graceMs = graceMs;
  }

  /** Promises these chunks to `uploadId` (and keeps the upload alive). */
  promise(uploadId: string, chunkIds: Iterable<string>): void {
    const upload = this.#uploads.get(uploadId) ?? { lastActiveMs: 0, chunks: new Set<string>() };
    upload.lastActiveMs = this.#now();
    for (const id of chunkIds) upload.chunks.add(id);
    this.#uploads.set(uploadId, upload);
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
