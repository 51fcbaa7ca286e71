import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Stream } from '@libp2p/interface';
import { type Logger, silentLogger } from '../log/index.ts';
import { type DfsPeer, FrameReader, FrameWriter } from '../net/index.ts';
import { decodeMessage, encodeMessage, type Message } from '../raft/index.ts';
import { validateSnapshotData } from './meta-machine.ts';
import type { RaftTransport } from './raft-driver.ts';
import { emptySnapshotStreamStats, SNAPSHOT_PROTOCOL, SnapshotReceiver, SnapshotSender, type SnapshotStreamStats } from './snapshot-stream.ts';

export const RAFT_PROTOCOL = '/dfs/raft/1.0.0';
export { SNAPSHOT_PROTOCOL };

/** Messages waiting for one peer; beyond this the oldest are dropped (Raft resends what matters). */
const MAX_OUTBOX_MSGS = 4096;
/** The largest Raft message: an append of the largest command (a max manifest, ~5 MB) and more; snapshots travel apart. */
const MAX_RAFT_FRAME_BYTES = 16 * 1024 * 1024;
const DIAL_TIMEOUT_MS = 2_000;
const MIN_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 2_000;
const DEFAULT_MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024 * 1024;
const DEFAULT_SNAPSHOT_IDLE_TIMEOUT_MS = 30_000;

export interface RaftTransportStats extends SnapshotStreamStats {
  sent: number;
  received: number;
  droppedOutbox: number;
  /** Malformed messages, and InstallSnapshots that came inline instead of on SNAPSHOT_PROTOCOL. */
  droppedMalformed: number;
  droppedSpoofed: number;
  reconnects: number;
}

export interface RaftTransportOptions {
  /**
   * Where snapshots being received are written (temp files, removed once handed over or refused):
   * a directory in the master's own directory. Default: a new directory under the OS temp dir.
   */
  readonly snapshotDir?: string;
  readonly logger?: Logger;
  /** Received snapshots larger than this are refused from their header on. Default 4 GiB. */
  readonly maxSnapshotBytes?: number;
  /** A snapshot stream (either way) that moves nothing for this long is dropped. Default 30 s. */
  readonly snapshotIdleTimeoutMs?: number;
  /**
   * Checks a received snapshot's content before Raft sees it; throws if it is not valid. Default:
   * the metadata state machine's check (validateSnapshotData).
   */
  readonly validateSnapshot?: (data: Uint8Array) => Promise<void>;
}

/**
 * Raft over libp2p: per peer one long-lived outbound stream on /dfs/raft/1.0.0, one message a
 * frame, written in order with backpressure; reconnects with exponential backoff. Raft ids are
 * libp2p peer ids, so every inbound message is checked to come from the authenticated (Noise)
 * peer it claims to be from; anything malformed or spoofed is dropped and counted.
 *
 * InstallSnapshot never travels as one frame: it goes on /dfs/raft-snapshot/1.0.0 in 1 MiB
 * pieces (see snapshot-stream.ts), at most one per peer at a time, and is handed to Raft only
 * once it has arrived whole, matches its digest and is a valid snapshot. An InstallSnapshot
 * that comes inline on /dfs/raft/1.0.0 is dropped as malformed.
 */
export class Libp2pRaftTransport implements RaftTransport {
  readonly stats: RaftTransportStats = {
    sent: 0,
    received: 0,
    droppedOutbox: 0,
    droppedMalformed: 0,
    droppedSpoofed: 0,
    reconnects: 0,
    ...emptySnapshotStreamStats(),
  };
  readonly #peer: DfsPeer;
  /** peer id → multiaddr with /p2p/ */
  readonly #addrs: ReadonlyMap<string, string>;
  readonly #links = new Map<string, PeerLink>();
  readonly #snapshotLinks = new Map<string, SnapshotSender>();
  readonly #options: RaftTransportOptions;
  readonly #log: Logger;
  #receiver: SnapshotReceiver | undefined;
  /** The temp directory start() made when no snapshotDir was given: removed by stop(). */
  #ownDir: string | undefined;
  #handler: (m: Message) => void = () => {};
  #stopped = false;

  constructor(peer: DfsPeer, addrs: ReadonlyMap<string, string>, options: RaftTransportOptions = {}) {
    this.#peer = peer;
    this.#addrs = addrs;
    this.#options = options;
    this.#log = (options.logger ?? silentLogger).child({ component: 'raft-transport' });
  }

  async start(): Promise<void> {
    if (this.#options.snapshotDir === undefined) this.#ownDir = await mkdtemp(join(tmpdir(), 'dfs-raft-snapshots-'));
    const receiver = new SnapshotReceiver({
      dir: this.#options.snapshotDir ?? this.#ownDir!,
      stats: this.stats,
      logger: this.#log,
      maxBytes: this.#options.maxSnapshotBytes ?? DEFAULT_MAX_SNAPSHOT_BYTES,
      idleTimeoutMs: this.#options.snapshotIdleTimeoutMs ?? DEFAULT_SNAPSHOT_IDLE_TIMEOUT_MS,
      validate: this.#options.validateSnapshot ?? ((data) => validateSnapshotData(data)),
    });
    await receiver.start();
    this.#receiver = receiver;
    await this.#peer.handle(RAFT_PROTOCOL, (stream, remote) => this.#serveInbound(stream, remote.peerId), { maxInboundStreams: 4 });
    await this.#peer.handle(SNAPSHOT_PROTOCOL, (stream, remote) => this.#serveSnapshot(stream, remote.peerId), { maxInboundStreams: 2 });
  }

  onMessage(handler: (m: Message) => void): void {
    this.#handler = handler;
  }

  send(message: Message): void {
    if (this.#stopped) return;
    const addr = this.#addrs.get(message.to);
    if (!addr) return; // not a master we know: nothing to send to
    if (message.type === 'installSnapshot') {
      let sender = this.#snapshotLinks.get(message.to);
      if (!sender) {
        sender = new SnapshotSender({
          peer: this.#peer,
          addr,
          stats: this.stats,
          logger: this.#log,
          dialTimeoutMs: DIAL_TIMEOUT_MS,
          idleTimeoutMs: this.#options.snapshotIdleTimeoutMs ?? DEFAULT_SNAPSHOT_IDLE_TIMEOUT_MS,
        });
        this.#snapshotLinks.set(message.to, sender);
      }
      sender.offer(message);
      return;
    }
    let link = this.#links.get(message.to);
    if (!link) {
      link = new PeerLink(this.#peer, addr, this.stats, () => this.#stopped);
      this.#links.set(message.to, link);
    }
    link.enqueue(encodeMessage(message));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const link of this.#links.values()) link.close();
    for (const sender of this.#snapshotLinks.values()) sender.close();
    this.#receiver?.stop();
    await this.#peer.unhandle(RAFT_PROTOCOL).catch(() => {});
    await this.#peer.unhandle(SNAPSHOT_PROTOCOL).catch(() => {});
    if (this.#ownDir) await rm(this.#ownDir, { recursive: true, force: true }).catch(() => {});
  }

  async #serveSnapshot(stream: Stream, remotePeerId: string): Promise<void> {
    if (!this.#addrs.has(remotePeerId)) {
      // Only masters send snapshots: nothing from anyone else goes to disk.
      this.stats.snapshotsRefused++;
      this.#log.warn({ from: remotePeerId }, 'refused a snapshot from a peer that is not a known master');
      stream.abort(new Error('not a known master'));
      return;
    }
    const message = await this.#receiver?.receive(stream, remotePeerId);
    if (!message || this.#stopped) return;
    this.stats.received++;
    this.#handler(message);
  }

  async #serveInbound(stream: Stream, remotePeerId: string): Promise<void> {
    if (!this.#addrs.has(remotePeerId)) {
      // Not one of the masters this one was told of: not a byte of it is read.
      this.stats.droppedSpoofed++;
      stream.abort(new Error('raft: not a master of this cluster'));
      return;
    }
    for await (const frame of new FrameReader(stream, { maxFrameBytes: MAX_RAFT_FRAME_BYTES })) {
      if (this.#stopped) break;
      const message = decodeMessage(frame.subarray());
      if (!message || message.type === 'installSnapshot') {
        // A snapshot must come on SNAPSHOT_PROTOCOL, where it is checked before Raft sees it.
        this.stats.droppedMalformed++;
        continue;
      }
      if (message.from !== remotePeerId) {
        this.stats.droppedSpoofed++;
        continue;
      }
      this.stats.received++;
      this.#handler(message);
    }
  }
}

/** The outbound side towards one peer: a queue and a writer loop that owns the stream. */
class PeerLink {
  readonly #peer: DfsPeer;
  readonly #addr: string;
  readonly #stats: RaftTransportStats;
  readonly #stopped: () => boolean;
  readonly #outbox: Uint8Array[] = [];
  #running = false;
  #closed = false;
  #stream: Stream | undefined;
  #backoffMs = MIN_BACKOFF_MS;
  #retryAt = 0;

  constructor(peer: DfsPeer, addr: string, stats: RaftTransportStats, stopped: () => boolean) {
    this.#peer = peer;
    this.#addr = addr;
    this.#stats = stats;
    this.#stopped = stopped;
  }

  enqueue(bytes: Uint8Array): void {
    if (this.#outbox.length >= MAX_OUTBOX_MSGS) {
      this.#outbox.shift();
      this.#stats.droppedOutbox++;
    }
    this.#outbox.push(bytes);
    if (!this.#running) void this.#run();
  }

  close(): void {
    this.#closed = true;
    this.#outbox.length = 0;
    this.#stream?.abort(new Error('raft transport stopped'));
  }

  async #run(): Promise<void> {
    this.#running = true;
    try {
      while (this.#outbox.length > 0 && !this.#closed && !this.#stopped()) {
        if (Date.now() < this.#retryAt) {
          // Down peer, in backoff: what waits is stale by the time it could go; Raft resends.
          this.#stats.droppedOutbox += this.#outbox.length;
          this.#outbox.length = 0;
          break;
        }
        const writer = await this.#writer();
        if (!writer) continue;
        // Everything queued goes at once: the writer coalesces it into one send (one Noise
        // message) and its promises resolve when the stream can take more (backpressure).
        const batch = this.#outbox.splice(0);
        try {
          await Promise.all(batch.map((bytes) => writer.write(bytes)));
          this.#stats.sent += batch.length;
        } catch {
          this.#dropStream();
        }
      }
    } finally {
      this.#running = false;
    }
  }

  #writerFor: FrameWriter | undefined;

  async #writer(): Promise<FrameWriter | undefined> {
    if (this.#stream && this.#writerFor) return this.#writerFor;
    try {
      this.#stream = await this.#peer.dialProtocol(this.#addr, RAFT_PROTOCOL, { timeoutMs: DIAL_TIMEOUT_MS });
      this.#writerFor = new FrameWriter(this.#stream, { maxFrameBytes: MAX_RAFT_FRAME_BYTES });
      this.#backoffMs = MIN_BACKOFF_MS;
      this.#stats.reconnects++;
      return this.#writerFor;
    } catch {
      this.#retryAt = Date.now() + this.#backoffMs;
      this.#backoffMs = Math.min(this.#backoffMs * 2, MAX_BACKOFF_MS);
      return undefined;
    }
  }

  #dropStream(): void {
    this.#stream?.abort(new Error('raft stream failed'));
    this.#stream = undefined;
    this.#writerFor = undefined;
  }
}
