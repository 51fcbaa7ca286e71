import { statfs } from 'node:fs/promises';
import type { Blake3 } from '../../src/chunker/index.ts';
import { getFile, MetaClient, putFile } from '../../src/client/index.ts';
import { isDfsError } from '../../src/errors/index.ts';
import { type Entry, parsePlacements } from '../../src/meta/index.ts';
import type { DfsPeer } from '../../src/net/index.ts';
import { ByteComparer, type Content, type ContentCatalog, contentSource, short } from './content.ts';
import type { History, OpKind, OpRecord, Outcome } from './history.ts';
import { Rng } from './rng.ts';

/**
 * Refusals: the master answered, and the command changed nothing (it is validated before any
 * change, and a retried command gets its first answer). Any other failure of a write that was
 * sent — a timeout, a lost leader, a dropped connection — leaves its outcome unknown.
 */
const REFUSALS: ReadonlySet<string> = new Set([
  'ERR_EXISTS',
  'ERR_NOT_FOUND',
  'ERR_IS_DIR',
  'ERR_NOT_DIR',
  'ERR_INVALID_PATH',
  'ERR_INVALID_MANIFEST',
  'ERR_UNDER_REPLICATED',
  'ERR_NOT_EMPTY',
  'ERR_INVALID_ARGUMENT',
]);

/** The namespace the workload works in: groups of three files; renames stay within a group. */
export function groupPaths(groups: number): string[][] {
  return Array.from({ length: groups }, (_, g) => ['a', 'b', 'c'].map((f) => `/chaos/g${g}/${f}`));
}

export interface WorkloadOptions {
  readonly seed: number;
  readonly workers: number;
  readonly peer: DfsPeer;
  readonly masters: readonly string[];
  readonly blake3: Blake3;
  readonly catalog: ContentCatalog;
  readonly history: History;
  readonly groups: readonly (readonly string[])[];
  /** Bound on one metadata request with its retries (MetaClient timeoutMs). */
  readonly requestTimeoutMs: number;
  /** Workers with a short request bound (2 s attempts, 4 s in all), so failovers leave outcomes unknown. */
  readonly impatientWorkers: number;
  /** What the cluster says about a chunk a read could not get (for the history). */
  readonly inspect?: (chunkId: string) => Promise<string>;
  /** Bytes of puts per second, all workers together (a token bucket, 16 MiB deep). */
  readonly putBytesPerSec: number;
  /** The run directory: puts pause while its filesystem is low (GC lags behind leader changes). */
  readonly runDir: string;
  /** The login every metadata request carries (an admin's: the checks read every node and path). */
  readonly token: string;
}

/** Puts pause while the run directory's filesystem has less than this free, or less than 15%. */
const LOW_DISK_BYTES = 8 * 2 ** 30;
const BUCKET_BYTES = 16 * 2 ** 20;

/** Placement answers as a put receives them: the pipeline of each chunk (multiaddrs). */
export type PlacementHook = (pipelines: string[][]) => void;

interface Tally {
  ok: number;
  error: number;
  indeterminate: number;
}

/**
 * Concurrent clients doing puts (mixed sizes, duplicate content), creates, gets, stats,
 * overwrites, removes and renames, each op and its outcome recorded in the history.
 */
export class Workload {
  readonly #o: WorkloadOptions;
  #stopping = false;
  #running: Promise<void>[] = [];
  readonly tally = new Map<OpKind, Tally>();
  /** Bytes of puts the cluster acknowledged, and bytes of reads checked during the run. */
  bytesAcked = 0;
  bytesRead = 0;
  /** Reads whose bytes hashed to no content ever written. */
  readonly badReads: string[] = [];
  readonly errorCodes = new Map<string, number>();
  /** Failures by code and message (ids and numbers blanked), for the figures. */
  readonly failureReasons = new Map<string, number>();

  /** Puts turned into reads: over the byte budget, or while the disk was low. */
  readonly skippedPuts = { budget: 0, disk: 0 };
  #tokens = BUCKET_BYTES;
  #refilledAt = performance.now();
  #disk = { checkedAt: -Infinity, low: false };

  constructor(options: WorkloadOptions) {
    this.#o = options;
  }

  /** Whether a put of `bytes` may go now (taking them from the budget). */
  async #mayPut(bytes: number): Promise<boolean> {
    const now = performance.now();
    this.#tokens = Math.min(BUCKET_BYTES, this.#tokens + ((now - this.#refilledAt) / 1000) * this.#o.putBytesPerSec);
    this.#refilledAt = now;
    if (now - this.#disk.checkedAt > 2_000) {
      this.#disk.checkedAt = now;
      const s = await statfs(this.#o.runDir).catch(() => undefined);
      const low = s !== undefined && (s.bavail * s.bsize < LOW_DISK_BYTES || s.bavail < 0.15 * s.blocks);
      if (low && !this.#disk.low) console.log(`[chaos] ${this.#o.history.at()}: the run directory's disk is low (${((s!.bavail * s!.bsize) / 2 ** 30).toFixed(1)} GiB free): puts pause until GC frees space`);
      if (!low && this.#disk.low) console.log(`[chaos] ${this.#o.history.at()}: disk space back: puts resume`);
      this.#disk.low = low;
    }
    if (this.#disk.low) {
      this.skippedPuts.disk++;
      return false;
    }
    if (this.#tokens < Math.min(bytes, BUCKET_BYTES)) {
      this.skippedPuts.budget++;
      return false;
    }
    this.#tokens -= bytes;
    return true;
  }

  meta(extra: { timeoutMs?: number } = {}): MetaClient {
    return new MetaClient({ peer: this.#o.peer, masters: this.#o.masters, token: this.#o.token, timeoutMs: extra.timeoutMs ?? this.#o.requestTimeoutMs, attemptTimeoutMs: 2_000 });
  }

  start(): void {
    this.#running = Array.from({ length: this.#o.workers }, (_, i) => this.#worker(i));
  }

  /** Ends the workers after their current operation. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(this.#running);
  }

  async #worker(index: number): Promise<void> {
    const rng = Rng.derive(this.#o.seed, 100 + index);
    const meta = this.meta(index < this.#o.impatientWorkers ? { timeoutMs: 4_000 } : {});
    const client = `w${index}`;
    try {
      while (!this.#stopping) {
        const group = rng.pick(this.#o.groups);
        const path = rng.pick(group);
        const kind = rng.weighted({ put: 28, create: 7, get: 25, stat: 12, rm: 12, mv: 16 });
        switch (kind) {
          case 'put':
          case 'create': {
            const content = this.#o.catalog.next(rng);
            // Over the byte budget, or the disk is low: a read instead (the schedule of writes is what it is).
            if (!(await this.#mayPut(content.size))) await this.get(client, meta, path);
            else await this.put(client, meta, path, content, kind === 'create');
            break;
          }
          case 'get':
            await this.get(client, meta, path);
            break;
          case 'stat':
            await this.stat(client, meta, path);
            break;
          case 'rm':
            await this.write(client, meta, 'rm', path);
            break;
          case 'mv': {
            const [from, to] = rng.sample(group, 2);
            await this.write(client, meta, 'mv', from!, to!);
            break;
          }
        }
      }
    } finally {
      meta.close();
    }
  }

  #record(r: Omit<OpRecord, 'id'>): OpRecord {
    const record: OpRecord = { id: this.#o.history.nextId(), ...r };
    this.#o.history.op(record);
    const t = this.tally.get(r.op) ?? { ok: 0, error: 0, indeterminate: 0 };
    t[r.outcome]++;
    this.tally.set(r.op, t);
    if (r.code) {
      this.errorCodes.set(r.code, (this.errorCodes.get(r.code) ?? 0) + 1);
      const reason = `${r.op} ${r.code}: ${(r.message ?? '').replace(/[0-9a-f]{64}/g, '<id>').replace(/\/ip4\/\S+/g, '<addr>').replace(/\d+/g, 'N').slice(0, 140)}`;
      this.failureReasons.set(reason, (this.failureReasons.get(reason) ?? 0) + 1);
    }
    return record;
  }

  /** A put (replace) or create (if absent); `onPlace` sees each placement answer. */
  async put(client: string, meta: MetaClient, path: string, content: Content, create: boolean, onPlace?: PlacementHook): Promise<OpRecord> {
    let commitSent = false;
    // The same client, but a commit is known to have been sent: before it, a failure changed nothing.
    const tracked = new Proxy(meta, {
      get(target, prop) {
        if (prop === 'write') {
          return (...args: Parameters<MetaClient['write']>) => {
            commitSent = true;
            return target.write(...args);
          };
        }
        if (prop === 'leaderRequest' && onPlace) {
          return async (...args: Parameters<MetaClient['leaderRequest']>) => {
            const value = await target.leaderRequest(...args);
            if (args[0].type === 'place') {
              try {
                onPlace(parsePlacements(value).flatMap((p) => ('targets' in p ? [[...p.targets]] : [])));
              } catch {
                // the put itself will say what is wrong with the answer
              }
            }
            return value;
          };
        }
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const base = { client, op: create ? ('create' as const) : ('put' as const), path, content: short(content.key), size: content.size };
    const call = this.#o.history.now();
    try {
      await putFile(contentSource(content.segments), path, { peer: this.#o.peer, meta: tracked, blake3: this.#o.blake3, parents: true, ifAbsent: create });
      this.bytesAcked += content.size;
      return this.#record({ ...base, call, return: this.#o.history.now(), outcome: 'ok', output: 'ok' });
    } catch (err) {
      const ret = this.#o.history.now();
      const code = codeOf(err);
      const message = (err as Error).message;
      if (commitSent && create && code === 'ERR_EXISTS') return this.#record({ ...base, call, return: ret, outcome: 'ok', output: 'exists' });
      const outcome: Outcome = !commitSent || REFUSALS.has(code) ? 'error' : 'indeterminate';
      return this.#record({ ...base, call, return: outcome === 'indeterminate' ? null : ret, outcome, code, message });
    }
  }

  /**
   * A whole-file read; its output is the content the bytes hash to (or "corrupt:<hash>"). With
   * `expect` (the final read-back), the bytes are also compared one by one with that content.
   */
  async get(client: string, meta: MetaClient, path: string, expect?: Content): Promise<{ record: OpRecord; mismatch?: string; bytes: number }> {
    const call = this.#o.history.now();
    const hasher = await this.#o.blake3.createHasher();
    hasher.reset();
    const comparer = expect ? new ByteComparer(expect) : undefined;
    let bytes = 0;
    const final = expect ? { final: true } : {};
    try {
      await getFile(
        path,
        {
          write: async (pieces) => {
            for (const p of pieces) {
              hasher.update(p);
              comparer?.feed(p);
              bytes += p.length;
            }
          },
        },
        { peer: this.#o.peer, meta, blake3: this.#o.blake3 },
      );
      const digest = hasher.digestHex();
      const known = this.#o.catalog.get(digest);
      let mismatch: string | undefined;
      if (!known) mismatch = `${path}: read ${bytes} bytes hashing to ${digest}, which no put wrote`;
      else if (comparer) {
        const diff = comparer.finish();
        if (diff !== undefined || known.key !== expect!.key) mismatch = `${path}: not the content ${short(expect!.key)} its entry names: ${diff ?? `read ${short(known.key)}`}`;
      }
      if (mismatch) this.badReads.push(mismatch);
      else this.bytesRead += bytes;
      const record = this.#record({ client, op: 'get', path, call, return: this.#o.history.now(), outcome: 'ok', output: known ? short(digest) : `corrupt:${short(digest)}`, size: bytes, ...final });
      return { record, bytes, ...(mismatch ? { mismatch } : {}) };
    } catch (err) {
      const ret = this.#o.history.now();
      const code = codeOf(err);
      const message = (err as Error).message;
      if (code === 'ERR_NOT_FOUND') return { record: this.#record({ client, op: 'get', path, call, return: ret, outcome: 'ok', output: null, ...final }), bytes };
      let evidence: string | undefined;
      const chunk = /[0-9a-f]{64}/.exec(message)?.[0];
      if (chunk && this.#o.inspect && (code === 'ERR_CHUNK_NOT_FOUND' || code === 'ERR_CHUNK_CORRUPT')) {
        evidence = await this.#o.inspect(chunk).catch((e: unknown) => `inspection failed: ${(e as Error).message}`);
        console.log(`[chaos] ${this.#o.history.at(ret)}: ${client} get ${path}: ${code}: ${message}\n[chaos]   right after: ${evidence}`);
      }
      return { record: this.#record({ client, op: 'get', path, call, return: ret, outcome: 'error', code, message, ...final, ...(evidence ? { evidence } : {}) }), bytes };
    }
  }

  async stat(client: string, meta: MetaClient, path: string, final = false): Promise<{ record: OpRecord; entry?: Entry }> {
    const call = this.#o.history.now();
    try {
      const entry = await meta.stat(path);
      const output = entry.kind === 'file' ? short(entry.manifest.blake3) : `dir`;
      return { record: this.#record({ client, op: 'stat', path, call, return: this.#o.history.now(), outcome: 'ok', output, ...(final ? { final } : {}) }), entry };
    } catch (err) {
      const ret = this.#o.history.now();
      const code = codeOf(err);
      if (code === 'ERR_NOT_FOUND') return { record: this.#record({ client, op: 'stat', path, call, return: ret, outcome: 'ok', output: null, ...(final ? { final } : {}) }) };
      return { record: this.#record({ client, op: 'stat', path, call, return: ret, outcome: 'error', code, message: (err as Error).message, ...(final ? { final } : {}) }) };
    }
  }

  async write(client: string, meta: MetaClient, op: 'rm' | 'mv', path: string, to?: string): Promise<OpRecord> {
    const call = this.#o.history.now();
    const base = { client, op, path, ...(to !== undefined ? { to } : {}) };
    try {
      await meta.write(op === 'rm' ? { op: 'rm', path, recursive: false } : { op: 'mv', from: path, to: to! });
      return this.#record({ ...base, call, return: this.#o.history.now(), outcome: 'ok', output: 'ok' });
    } catch (err) {
      const ret = this.#o.history.now();
      const code = codeOf(err);
      if (code === 'ERR_NOT_FOUND') return this.#record({ ...base, call, return: ret, outcome: 'ok', output: 'not_found' });
      const outcome: Outcome = REFUSALS.has(code) ? 'error' : 'indeterminate';
      return this.#record({ ...base, call, return: outcome === 'indeterminate' ? null : ret, outcome, code, message: (err as Error).message });
    }
  }

  /** Every operation counted, and by outcome. */
  totals(): Tally & { all: number } {
    const t = { ok: 0, error: 0, indeterminate: 0, all: 0 };
    for (const x of this.tally.values()) {
      t.ok += x.ok;
      t.error += x.error;
      t.indeterminate += x.indeterminate;
    }
    t.all = t.ok + t.error + t.indeterminate;
    return t;
  }
}

export function codeOf(err: unknown): string {
  if (isDfsError(err)) return err.code;
  return err instanceof Error ? err.name || 'Error' : 'unknown';
}
