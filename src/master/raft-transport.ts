import type { Stream } from '@libp2p/interface';
import { type DfsPeer, FrameReader, FrameWriter } from '../net/index.ts';
import { decodeMessage, encodeMessage, type Message } from '../raft/index.ts';
import type { RaftTransport } from './raft-driver.ts';

export const RAFT_PROTOCOL = '/dfs/raft/1.0.0';

/** Messages waiting for one peer; beyond this the oldest are dropped (Raft resends what matters). */
const MAX_OUTBOX_MSGS = 4096;
const MAX_RAFT_FRAME_BYTES = 64 * 1024 * 1024;
const DIAL_TIMEOUT_MS = 2_000;
const MIN_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 2_000;

export interface RaftTransportStats {
  sent: number;
  received: number;
  droppedOutbox: number;
  droppedMalformed: number;
  droppedSpoofed: number;
  reconnects: number;
}

/**
 * Raft over libp2p: per peer one long-lived outbound stream on /dfs/raft/1.0.0, one message a
 * frame, written in order with backpressure; reconnects with exponential backoff. Raft ids are
 * libp2p peer ids, so every inbound message is checked to come from the authenticated (Noise)
 * peer it claims to be from; anything malformed or spoofed is dropped and counted.
 */
export class Libp2pRaftTransport implements RaftTransport {
  readonly stats: RaftTransportStats = { sent: 0, received: 0, droppedOutbox: 0, droppedMalformed: 0, droppedSpoofed: 0, reconnects: 0 };
  readonly #peer: DfsPeer;
  /** peer id → multiaddr with /p2p/ */
  readonly #addrs: ReadonlyMap<string, string>;
  readonly #links = new Map<string, PeerLink>();
  #handler: (m: Message) => void = () => {};
  #stopped = false;

  constructor(peer: DfsPeer, addrs: ReadonlyMap<string, string>) {
    this.#peer = peer;
    this.#addrs = addrs;
  }

  async start(): Promise<void> {
    await this.#peer.handle(RAFT_PROTOCOL, (stream, remote) => this.#serveInbound(stream, remote.peerId), { maxInboundStreams: 4 });
  }

  onMessage(handler: (m: Message) => void): void {
    this.#handler = handler;
  }

  send(message: Message): void {
    if (this.#stopped) return;
    const addr = this.#addrs.get(message.to);
    if (!addr) return; // not a master we know: nothing to send to
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
    await this.#peer.unhandle(RAFT_PROTOCOL).catch(() => {});
  }

  async #serveInbound(stream: Stream, remotePeerId: string): Promise<void> {
    for await (const frame of new FrameReader(stream, { maxFrameBytes: MAX_RAFT_FRAME_BYTES })) {
      if (this.#stopped) break;
      const message = decodeMessage(frame.subarray());
      if (!message) {
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
