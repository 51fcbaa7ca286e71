import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { LocalCluster } from '../../src/cluster/index.ts';
import { META_PROTOCOL } from '../../src/meta/index.ts';
import { createPeer, type DfsPeer, FrameReader, FrameWriter, type PeerOptions, RpcChannel, schema, type Stream, swarmKeyFromSecret } from '../../src/net/index.ts';
import { CHUNK_FRAME_MAX_BYTES, CHUNK_PROTOCOL } from '../../src/protocol/chunk-protocol.ts';

/**
 * An attacker against a real local cluster (issue 12), from inside the test process: a libp2p
 * peer that holds the cluster secret but no role (an insider: anyone who got the swarm key), or
 * one with another secret or none (a stranger). It speaks the cluster's protocols raw, frame by
 * frame, so it can send what no dfs client would.
 */

export const RAFT_PROTOCOL = '/dfs/raft/1.0.0';
export const SNAPSHOT_PROTOCOL = '/dfs/raft-snapshot/1.0.0';

/** An insider: the cluster's secret, a fresh identity, no user, no admin key. */
export function insiderPeer(cluster: LocalCluster, options: PeerOptions = {}): Promise<DfsPeer> {
  return cluster.createClientPeer(options);
}

/** A stranger: no secret at all (`psk` undefined) or another cluster's (a fresh random one). */
export function strangerPeer(secret: 'none' | 'other'): Promise<DfsPeer> {
  return createPeer(secret === 'none' ? { listen: [] } : { listen: [], psk: swarmKeyFromSecret(randomBytes(32)) });
}

/** A fresh identity and its peer id (a rogue storage node signs receipts with it). */
export async function identity(): Promise<{ key: PrivateKey; peerId: string }> {
  const key = await generateKeyPair('Ed25519');
  return { key, peerId: peerIdFromPrivateKey(key).toString() };
}

export interface MetaAnswer {
  readonly ok: boolean;
  readonly code?: string;
  readonly message?: string;
  readonly value?: unknown;
}

const metaAnswer = schema.object({
  ok: schema.boolean(),
  code: schema.optional(schema.string()),
  message: schema.optional(schema.string()),
  value: schema.optional(schema.unknown()),
});

/** One metadata request, sent as it is (no client-side checks, no retries), and its answer. */
export async function metaCall(peer: DfsPeer, addr: string, request: object, timeoutMs = 10_000): Promise<MetaAnswer> {
  const channel = new RpcChannel(peer, addr, META_PROTOCOL);
  try {
    return await channel.call(request, metaAnswer, { timeoutMs });
  } finally {
    channel.close();
  }
}

/** How a stream the attacker opened ended: reset by the other side (`error`), or not within the wait. */
export interface Ending {
  readonly closed: boolean;
  readonly error?: string;
  /** Frames the attacker got written before the end (the other side may not have read them). */
  readonly written: number;
}

/** Resolves once `stream` closes (with the error it closed with), or after `timeoutMs`. */
export function endingOf(stream: Stream, timeoutMs: number): Promise<{ closed: boolean; error?: string }> {
  if (stream.status !== 'open') return Promise.resolve({ closed: true, error: `stream ${stream.status}` });
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ closed: false }), timeoutMs);
    stream.addEventListener(
      'close',
      (evt) => {
        clearTimeout(timer);
        resolve({ closed: true, ...(evt.error ? { error: `${evt.error.name}: ${evt.error.message}` } : {}) });
      },
      { once: true },
    );
  });
}

/**
 * Opens `protocol` to `addr` and writes `frames` (length-prefixed, as FrameWriter does), then
 * waits up to `waitMs` for the stream to end. A dial refused at negotiation counts as an ending.
 */
export async function sendFrames(peer: DfsPeer, addr: string, protocol: string, frames: readonly Uint8Array[], waitMs = 5_000): Promise<Ending> {
  let stream: Stream;
  try {
    stream = await peer.dialProtocol(addr, protocol, { timeoutMs: 10_000 });
  } catch (err) {
    return { closed: true, error: `not opened: ${(err as Error).message}`, written: 0 };
  }
  const ending = endingOf(stream, waitMs);
  const writer = new FrameWriter(stream, { maxFrameBytes: 64 * 1024 * 1024 });
  let written = 0;
  try {
    for (const frame of frames) {
      await writer.write(frame, { signal: AbortSignal.timeout(waitMs) });
      written++;
    }
    await writer.close({ signal: AbortSignal.timeout(waitMs) });
  } catch {
    // reset by the other side: the ending says how
  }
  const end = await ending;
  if (stream.status === 'open') stream.abort(new Error('attacker done'));
  return { ...end, written };
}

const utf8 = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));

/** Raft messages (`/dfs/raft/1.0.0`), one a frame, as a master encodes them (JSON). */
export function raftFrames(messages: readonly object[]): Uint8Array[] {
  return messages.map(utf8);
}

/**
 * An InstallSnapshot on `/dfs/raft-snapshot/1.0.0` as a master sends one: header, the data in
 * pieces, then the SHA-256 of the data (see src/master/snapshot-stream.ts).
 */
export function snapshotFrames(header: { from: string; to: string; term: number; metadata: { index: number; term: number; config: { voters: string[]; learners: string[] } } }, data: Uint8Array): Uint8Array[] {
  const tagged = (tag: number, body: Uint8Array): Uint8Array => {
    const out = new Uint8Array(1 + body.byteLength);
    out[0] = tag;
    out.set(body, 1);
    return out;
  };
  const frames = [tagged(1, utf8({ ...header, bytes: data.byteLength }))];
  for (let at = 0; at < data.byteLength; at += 1024 * 1024) frames.push(tagged(2, data.subarray(at, at + 1024 * 1024)));
  frames.push(tagged(3, utf8({ sha256: createHash('sha256').update(data).digest('hex') })));
  return frames;
}

/**
 * One chunk-protocol exchange (`/dfs/chunk/1.0.0`), raw: a header frame, the payload frames,
 * an end; resolves with the answer header (parsed JSON) or the way the stream ended.
 */
export async function chunkExchange(peer: DfsPeer, addr: string, header: object, payload?: Uint8Array, timeoutMs = 10_000): Promise<{ answer?: Record<string, unknown>; error?: string }> {
  const stream = await peer.dialProtocol(addr, CHUNK_PROTOCOL, { timeoutMs });
  const reader = new FrameReader(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
  const writer = new FrameWriter(stream, { maxFrameBytes: CHUNK_FRAME_MAX_BYTES });
  try {
    await writer.write(utf8(header), { signal: AbortSignal.timeout(timeoutMs) });
    if (payload && payload.byteLength > 0) await writer.write(payload, { signal: AbortSignal.timeout(timeoutMs) });
    await writer.close({ signal: AbortSignal.timeout(timeoutMs) });
  } catch {
    // refused mid-way: the answer (or the reset) says why
  }
  try {
    const frame = await reader.read({ signal: AbortSignal.timeout(timeoutMs) });
    if (frame === undefined) return { error: 'stream ended without an answer' };
    return { answer: JSON.parse(new TextDecoder().decode(frame.subarray())) as Record<string, unknown> };
  } catch (err) {
    return { error: `${(err as Error).name}: ${(err as Error).message}` };
  } finally {
    reader.release();
    if (stream.status === 'open') stream.abort(new Error('attacker done'));
  }
}

/**
 * A TCP listener on a free loopback port that counts the connections made to it: the target a
 * port-scanning request would aim a node at. It must see none.
 */
export class ConnectionSentinel {
  readonly port: number;
  connections = 0;
  readonly #server: Server;

  private constructor(server: Server, port: number) {
    this.#server = server;
    this.port = port;
  }

  static async start(): Promise<ConnectionSentinel> {
    let sentinel: ConnectionSentinel | undefined;
    const server = createServer((socket) => {
      if (sentinel) sentinel.connections++;
      socket.destroy();
    });
    await new Promise<void>((ok, fail) => server.once('error', fail).listen(0, '127.0.0.1', () => ok()));
    sentinel = new ConnectionSentinel(server, (server.address() as { port: number }).port);
    return sentinel;
  }

  close(): Promise<void> {
    return new Promise((ok) => this.#server.close(() => ok()));
  }
}

/** Lines of a process's log (pino JSON) that match `pattern`. */
export async function logLines(dir: string, pattern: RegExp): Promise<string[]> {
  const text = await readFile(join(dir, 'process.log'), 'utf8').catch(() => '');
  return text.split('\n').filter((line) => pattern.test(line));
}
