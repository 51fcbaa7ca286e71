import { constants as bufferConstants } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Stream, StreamCloseEvent } from '@libp2p/interface';
import { Uint8ArrayList } from 'uint8arraylist';
import { DfsError } from '../errors/index.ts';
import type { Logger } from '../log/index.ts';
import { type DfsPeer, FrameReader, FrameWriter } from '../net/index.ts';
import { type InstallSnapshot, validateMessage } from '../raft/index.ts';
import { readWholeFile } from './snapshot-file.ts';

/**
 * InstallSnapshot over its own libp2p protocol, so that a snapshot of any size travels in
 * bounded pieces instead of one frame of /dfs/raft/1.0.0. One stream per snapshot, one way:
 *
 *   header  0x01 + JSON {from, to, term, metadata: {index, term, config}, bytes}
 *   data    0x02 + at most 1 MiB of the snapshot, in order (as many frames as it takes)
 *   end     0x03 + JSON {sha256}: the SHA-256 of all the data, hex
 *
 * then the sender closes its side. The digest comes last so the sender hashes as it sends, in
 * one pass, without a stall up front. The receiver writes the pieces to a temp file as they
 * arrive (the frame reader pauses the stream while the disk catches up: bounded memory), checks
 * the length and the digest, reads the file back, checks that the content is a valid snapshot,
 * and only then hands the message to Raft. Anything else is refused and its temp file removed.
 */
export const SNAPSHOT_PROTOCOL = '/dfs/raft-snapshot/1.0.0';

/** Snapshot bytes per data frame. */
export const SNAPSHOT_PIECE_BYTES = 1024 * 1024;
/** The largest frame on the snapshot protocol: a data frame, or a header with a large configuration. */
const MAX_SNAPSHOT_FRAME_BYTES = SNAPSHOT_PIECE_BYTES + 64 * 1024;
const TAG_HEADER = 1;
const TAG_DATA = 2;
const TAG_END = 3;
const DATA_TAG = Uint8Array.of(TAG_DATA);
const TEMP_SUFFIX = '.part';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * One macrotask turn. A write the stream takes without waiting resolves in a microtask, so a
 * sender that only awaited writes would hash, encrypt and send the whole snapshot in one turn
 * (measured: 30+ MiB, 150 ms, with yamux's window open): timers and other streams wait.
 */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export interface SnapshotStreamStats {
  /** Snapshots streamed whole to a peer and accepted by it. */
  snapshotsSent: number;
  /** Snapshots not sent: one was already in flight to that peer, a newer one replaced it, or the peer just accepted it. */
  snapshotsSkipped: number;
  /** Sends that failed: peer unreachable, stream reset, too slow, or the peer refused the snapshot. */
  snapshotSendFailures: number;
  /** Snapshots received whole, checked and handed to Raft. */
  snapshotsReceived: number;
  /** Snapshots refused: truncated, oversized, bad digest, not a valid snapshot, spoofed, idle too long. */
  snapshotsRefused: number;
}

export function emptySnapshotStreamStats(): SnapshotStreamStats {
  return { snapshotsSent: 0, snapshotsSkipped: 0, snapshotSendFailures: 0, snapshotsReceived: 0, snapshotsRefused: 0 };
}

function frameOf(tag: number, json: unknown): Uint8Array {
  const body = encoder.encode(JSON.stringify(json));
  const out = new Uint8Array(1 + body.length);
  out[0] = tag;
  out.set(body, 1);
  return out;
}

export interface SnapshotSenderOptions {
  readonly peer: DfsPeer;
  readonly addr: string;
  readonly stats: SnapshotStreamStats;
  readonly logger: Logger;
  readonly dialTimeoutMs: number;
  /** A write that cannot go out for this long (the receiver stopped reading) fails the send. */
  readonly idleTimeoutMs: number;
}

/**
 * After a peer accepted a snapshot it still persists and restores it before Raft hears back; the
 * leader probes again meanwhile. The same snapshot is not streamed to it again for this long, or
 * twice the time the accepted one took, whichever is longer.
 */
const RESEND_COOLDOWN_MS = 10_000;
/** How fast (bytes/s, at least) a receiver is expected to check a snapshot before answering. */
const MIN_CHECK_BYTES_PER_S = 5 * 1024 * 1024;

/**
 * The snapshot side of the link to one peer: at most one snapshot in flight. A snapshot offered
 * while the stream is being opened replaces the one waiting; one offered while another streams
 * or is being checked by the receiver is dropped, as is the one the peer just accepted (Raft
 * sends it again if the follower still needs it).
 */
export class SnapshotSender {
  readonly #o: SnapshotSenderOptions;
  #waiting: InstallSnapshot | undefined;
  #streaming = false;
  #running = false;
  #closed = false;
  #stream: Stream | undefined;
  /** The last snapshot the peer accepted, and until when it is not sent again. */
  #accepted: { index: number; term: number; untilMs: number } | undefined;

  constructor(options: SnapshotSenderOptions) {
    this.#o = options;
  }

  offer(message: InstallSnapshot): void {
    if (this.#closed) return;
    const { index, term } = message.snapshot.metadata;
    const accepted = this.#accepted;
    const justAccepted = accepted !== undefined && accepted.index === index && accepted.term === term && Date.now() < accepted.untilMs;
    if (this.#streaming || justAccepted) {
      this.#o.stats.snapshotsSkipped++;
      return;
    }
    if (this.#waiting) this.#o.stats.snapshotsSkipped++;
    this.#waiting = message;
    if (!this.#running) void this.#run();
  }

  close(): void {
    this.#closed = true;
    this.#waiting = undefined;
    this.#stream?.abort(new Error('raft transport stopped'));
  }

  async #run(): Promise<void> {
    this.#running = true;
    try {
      while (this.#waiting && !this.#closed) {
        let stream: Stream;
        try {
          stream = await this.#o.peer.dialProtocol(this.#o.addr, SNAPSHOT_PROTOCOL, { timeoutMs: this.#o.dialTimeoutMs });
        } catch (err) {
          // The follower is down: what waits is dropped, the leader retries later.
          this.#waiting = undefined;
          this.#o.stats.snapshotSendFailures++;
          this.#o.logger.debug({ to: this.#o.addr, err: (err as Error).message }, 'cannot open a snapshot stream');
          break;
        }
        const message = this.#waiting;
        this.#waiting = undefined;
        if (!message || this.#closed) {
          stream.abort(new Error('snapshot no longer wanted'));
          break;
        }
        this.#stream = stream;
        this.#streaming = true;
        const startedMs = Date.now();
        try {
          await this.#send(stream, message);
          const tookMs = Date.now() - startedMs;
          const { index, term } = message.snapshot.metadata;
          this.#accepted = { index, term, untilMs: Date.now() + Math.max(RESEND_COOLDOWN_MS, 2 * tookMs) };
          this.#o.stats.snapshotsSent++;
          this.#o.logger.info(
            { to: message.to, index: message.snapshot.metadata.index, bytes: message.snapshot.data.length, ms: Date.now() - startedMs },
            'sent a snapshot (accepted)',
          );
        } catch (err) {
          stream.abort(err instanceof Error ? err : new Error(String(err)));
          this.#o.stats.snapshotSendFailures++;
          this.#o.logger.warn({ to: message.to, index: message.snapshot.metadata.index, err: (err as Error).message }, 'sending a snapshot failed');
        } finally {
          this.#streaming = false;
          this.#stream = undefined;
        }
      }
    } finally {
      this.#running = false;
    }
  }

  async #send(stream: Stream, m: InstallSnapshot): Promise<void> {
    const writer = new FrameWriter(stream, { maxFrameBytes: MAX_SNAPSHOT_FRAME_BYTES });
    const signal = (): AbortSignal => AbortSignal.timeout(this.#o.idleTimeoutMs);
    const data = m.snapshot.data;
    const header = { from: m.from, to: m.to, term: m.term, metadata: m.snapshot.metadata, bytes: data.length };
    await writer.write(frameOf(TAG_HEADER, header), { signal: signal() });
    const hash = createHash('sha256');
    for (let at = 0; at < data.length; at += SNAPSHOT_PIECE_BYTES) {
      if (this.#closed) throw new DfsError('ERR_ABORTED', 'raft transport stopped');
      const piece = data.subarray(at, at + SNAPSHOT_PIECE_BYTES);
      hash.update(piece);
      await writer.write(new Uint8ArrayList(DATA_TAG, piece), { signal: signal() });
      await nextTurn();
    }
    await writer.write(frameOf(TAG_END, { sha256: hash.digest('hex') }), { signal: signal() });
    await writer.close({ signal: signal() });
    // The receiver checks the snapshot, then closes its side if it took it, resets if not.
    await closedByPeer(stream, Math.max(this.#o.idleTimeoutMs, (1000 * data.length) / MIN_CHECK_BYTES_PER_S));
  }
}

export interface SnapshotReceiverOptions {
  /** Where partly received snapshots are written (the master's directory). */
  readonly dir: string;
  readonly stats: SnapshotStreamStats;
  readonly logger: Logger;
  /** Larger snapshots are refused from their header on. */
  readonly maxBytes: number;
  /** A snapshot stream that brings nothing for this long is dropped. */
  readonly idleTimeoutMs: number;
  /** Checks the content; throws (anything) if it is not a valid snapshot. Must not change state. */
  readonly validate: (data: Uint8Array) => Promise<void>;
}

/** Why a snapshot was refused: a message for the log, and whether the peer lied about who it is. */
class Refusal extends Error {
  readonly spoofed: boolean;

  constructor(message: string, spoofed = false) {
    super(message);
    this.spoofed = spoofed;
  }
}

/**
 * The receiving side: one snapshot at a time per peer (a new stream from a peer replaces the one
 * it had under way), written to `<dir>/<random>.part`, checked, read back, handed over.
 */
export class SnapshotReceiver {
  readonly #o: SnapshotReceiverOptions;
  /** Per remote peer, the receive under way: aborting it drops it. */
  readonly #active = new Map<string, Stream>();
  readonly #temps = new Set<string>();
  #stopped = false;

  constructor(options: SnapshotReceiverOptions) {
    this.#o = options;
  }

  /** Creates the directory and removes temp files a previous run left (a crash mid-receive). */
  async start(): Promise<void> {
    await mkdir(this.#o.dir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.#o.dir)) {
      if (name.endsWith(TEMP_SUFFIX)) await unlink(join(this.#o.dir, name)).catch(() => {});
    }
  }

  stop(): void {
    this.#stopped = true;
    for (const stream of this.#active.values()) stream.abort(new Error('raft transport stopped'));
    this.#active.clear();
  }

  /** Temp files currently open (for tests). */
  get tempFiles(): string[] {
    return [...this.#temps];
  }

  /**
   * Receives one snapshot from `stream`, opened by the authenticated `remotePeerId`. Resolves
   * with the checked message, or undefined if it was refused (counted, logged, cleaned up).
   */
  async receive(stream: Stream, remotePeerId: string): Promise<InstallSnapshot | undefined> {
    const log = this.#o.logger;
    let temp: string | undefined;
    let index: number | undefined;
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = true;
        stream.abort(new DfsError('ERR_TIMEOUT', `snapshot stream idle for ${this.#o.idleTimeoutMs} ms`));
      }, this.#o.idleTimeoutMs);
    };
    const reader = new FrameReader(stream, { maxFrameBytes: MAX_SNAPSHOT_FRAME_BYTES });
    try {
      if (this.#stopped) throw new Refusal('transport stopped');
      arm();
      const first = await reader.read();
      if (!first) throw new Refusal('stream ended before the header');
      const header = this.#parseHeader(first, remotePeerId);
      index = header.message.snapshot.metadata.index;
      this.#active.get(remotePeerId)?.abort(new Error('replaced by a newer snapshot stream'));
      this.#active.set(remotePeerId, stream);

      temp = join(this.#o.dir, `${randomBytes(8).toString('hex')}${TEMP_SUFFIX}`);
      this.#temps.add(temp);
      const hash = createHash('sha256');
      let received = 0;
      let digest: string | undefined;
      const fh = await open(temp, 'wx', 0o600);
      try {
        for (;;) {
          arm();
          const frame = await reader.read();
          if (!frame) throw new Refusal(`truncated: the stream ended after ${received} of ${header.bytes} bytes`);
          const tag = frame.get(0);
          if (tag === TAG_DATA) {
            const piece = frame.sublist(1);
            received += piece.byteLength;
            if (received > header.bytes) throw new Refusal(`more data than the ${header.bytes} bytes announced`);
            const bufs = [...piece];
            for (const b of bufs) hash.update(b);
            await writeAll(fh, bufs);
          } else if (tag === TAG_END) {
            const end = parseJson(frame.subarray(1)) as { sha256?: unknown } | undefined;
            if (typeof end?.sha256 !== 'string') throw new Refusal('malformed end frame');
            digest = end.sha256;
            break;
          } else {
            throw new Refusal(`unexpected frame type ${tag}`);
          }
        }
      } finally {
        await fh.close();
      }
      clearTimeout(timer);
      if (received !== header.bytes) throw new Refusal(`truncated: ${received} of ${header.bytes} bytes`);
      const actual = hash.digest('hex');
      if (digest !== actual) throw new Refusal(`digest mismatch (sent ${digest}, received data hashes to ${actual})`);
      // Read back in pieces (readFile stops at 2 GiB), checking the length and the digest again.
      let data: Uint8Array;
      try {
        data = await readWholeFile(temp, { bytes: header.bytes, sha256: actual }, `the received snapshot's temp file ${temp}`, { maxBytes: this.#o.maxBytes });
      } catch (err) {
        throw new Refusal(`cannot read the received snapshot back: ${(err as Error).message}`);
      }
      try {
        await this.#o.validate(data);
      } catch (err) {
        throw new Refusal(`not a valid snapshot: ${(err as Error).message}`);
      }
      if (this.#stopped) throw new Refusal('transport stopped');
      this.#o.stats.snapshotsReceived++;
      log.info({ from: remotePeerId, index, bytes: data.length }, 'received a snapshot');
      // A clean close tells the sender it was accepted (a refusal resets the stream instead).
      void stream.close().catch(() => {});
      return { ...header.message, snapshot: { metadata: header.message.snapshot.metadata, data } };
    } catch (err) {
      clearTimeout(timer);
      this.#o.stats.snapshotsRefused++;
      const reason = timedOut ? `idle for ${this.#o.idleTimeoutMs} ms` : err instanceof Refusal ? err.message : (err as Error).message;
      const fields = { from: remotePeerId, index, reason };
      if (err instanceof Refusal && err.spoofed) log.warn(fields, 'refused a snapshot whose sender is not the peer that sent it');
      else log.warn(fields, 'refused a snapshot');
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      return undefined;
    } finally {
      clearTimeout(timer);
      reader.release();
      if (this.#active.get(remotePeerId) === stream) this.#active.delete(remotePeerId);
      if (temp) {
        this.#temps.delete(temp);
        await unlink(temp).catch(() => {});
      }
    }
  }

  #parseHeader(frame: Uint8ArrayList, remotePeerId: string): { message: InstallSnapshot; bytes: number } {
    if (frame.get(0) !== TAG_HEADER) throw new Refusal('the first frame is not a header');
    const h = parseJson(frame.subarray(1)) as Record<string, unknown> | undefined;
    if (typeof h !== 'object' || h === null) throw new Refusal('malformed header');
    if (h.from !== remotePeerId) throw new Refusal(`header claims to be from ${String(h.from).slice(0, 100)}`, true);
    const bytes = h.bytes;
    if (!Number.isSafeInteger(bytes) || (bytes as number) < 0) throw new Refusal('malformed header: bytes');
    if ((bytes as number) > this.#o.maxBytes) throw new Refusal(`${bytes as number} bytes exceed the ${this.#o.maxBytes}-byte limit`);
    if ((bytes as number) > bufferConstants.MAX_LENGTH) throw new Refusal(`${bytes as number} bytes exceed buffer.constants.MAX_LENGTH (${bufferConstants.MAX_LENGTH}), the largest snapshot this node can hold`);
    const message = validateMessage({ type: 'installSnapshot', from: h.from, to: h.to, term: h.term, snapshot: { metadata: h.metadata, data: new Uint8Array(0) } });
    if (message?.type !== 'installSnapshot') throw new Refusal('malformed header: not a valid InstallSnapshot');
    return { message, bytes: bytes as number };
  }
}

/** Resolves when the peer closes `stream` cleanly; rejects if it resets it or lets `timeoutMs` pass. */
function closedByPeer(stream: Stream, timeoutMs: number): Promise<void> {
  if (stream.status === 'closed') return Promise.resolve();
  if (stream.status !== 'open' && stream.status !== 'closing') return Promise.reject(new DfsError('ERR_STREAM_CLOSED', `the peer refused the snapshot (stream ${stream.status})`));
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.removeEventListener('close', onClose);
      reject(new DfsError('ERR_TIMEOUT', `the peer did not answer within ${Math.round(timeoutMs)} ms after the snapshot`));
    }, timeoutMs);
    const onClose = (evt: StreamCloseEvent): void => {
      clearTimeout(timer);
      if (evt.error === undefined) resolve();
      else reject(new DfsError('ERR_STREAM_CLOSED', `the peer refused the snapshot: ${evt.error.message}`));
    };
    stream.addEventListener('close', onClose, { once: true });
  });
}

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch {
    return undefined;
  }
}

async function writeAll(fh: Awaited<ReturnType<typeof open>>, bufs: Uint8Array[]): Promise<void> {
  let pending = bufs;
  while (pending.length > 0) {
    const { bytesWritten } = await fh.writev(pending);
    let left = bytesWritten;
    const rest: Uint8Array[] = [];
    for (const b of pending) {
      if (left >= b.length) {
        left -= b.length;
      } else {
        rest.push(left > 0 ? b.subarray(left) : b);
        left = 0;
      }
    }
    pending = rest;
  }
}
