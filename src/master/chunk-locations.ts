/**
 * Where each chunk is, as the leader knows it: only from the nodes themselves (their full and
 * incremental reports, or a receipt they signed). Both directions are indexed: chunk → holders
 * for placement, lookup and repair; node → chunks for what a node's death or report changes.
 */
export class ChunkLocations {
  readonly #holders = new Map<string, Set<string>>();
  readonly #byNode = new Map<string, Set<string>>();
  /** When a chunk was last placed, located or first seen: the GC's grace counts from here. */
  readonly #touchedMs = new Map<string, number>();
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  add(id: string, nodeId: string): void {
    let holders = this.#holders.get(id);
    if (!holders) {
      holders = new Set();
      this.#holders.set(id, holders);
      if (!this.#touchedMs.has(id)) this.#touchedMs.set(id, this.#now());
    }
    holders.add(nodeId);
    let chunks = this.#byNode.get(nodeId);
    if (!chunks) this.#byNode.set(nodeId, (chunks = new Set()));
    chunks.add(id);
  }

  remove(id: string, nodeId: string): void {
    const holders = this.#holders.get(id);
    if (holders) {
      holders.delete(nodeId);
      if (holders.size === 0) {
        this.#holders.delete(id);
        this.#touchedMs.delete(id);
      }
    }
    this.#byNode.get(nodeId)?.delete(id);
  }

  /** A full report: what the node holds now, replacing what was known. */
  replaceNode(nodeId: string, ids: ReadonlySet<string>): void {
    for (const id of [...(this.#byNode.get(nodeId) ?? [])]) if (!ids.has(id)) this.remove(id, nodeId);
    for (const id of ids) this.add(id, nodeId);
  }

  holders(id: string): ReadonlySet<string> {
    return this.#holders.get(id) ?? EMPTY;
  }

  chunksOf(nodeId: string): ReadonlySet<string> {
    return this.#byNode.get(nodeId) ?? EMPTY;
  }

  /** Restarts a located chunk's GC grace (an unknown id records nothing: no growth from requests). */
  touch(id: string): void {
    if (this.#holders.has(id)) this.#touchedMs.set(id, this.#now());
  }

  touchedMs(id: string): number {
    return this.#touchedMs.get(id) ?? 0;
  }

  /** Every located chunk with its holders. */
  entries(): IterableIterator<[string, ReadonlySet<string>]> {
    return this.#holders.entries();
  }

  get size(): number {
    return this.#holders.size;
  }
}

const EMPTY: ReadonlySet<string> = new Set();
