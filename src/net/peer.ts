import type { Registry } from 'prom-client';
import { noise } from '@chainsafe/libp2p-noise';
import { noiseCrypto } from './noise-crypto.ts';
import { yamux } from '@chainsafe/libp2p-yamux';
import { bootstrap } from '@libp2p/bootstrap';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { Connection, DialTarget, Libp2p, PeerId, PrivateKey, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { tcp } from '@libp2p/tcp';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { DfsError } from '../errors/index.ts';
import { deadlineSignal, errorFromAbort } from './deadline.ts';
import { MAX_STREAM_READ_BUFFER_BYTES, MAX_STREAM_WINDOW_BYTES, tagStreamPeer } from './frame-format.ts';
import { loadOrCreateIdentity } from './identity.ts';
import { noisePrologue, swarmKeyFromSecret } from './swarm-key.ts';

export interface PeerOptions {
  /** Directory holding the persistent identity (created on first start). */
  readonly dataDir?: string;
  /** An identity to use instead of one in `dataDir`. With neither, the peer gets a fresh one. */
  readonly privateKey?: PrivateKey;
  /** Multiaddrs to listen on, e.g. /ip4/0.0.0.0/tcp/7000. Clients may listen on none. */
  readonly listen?: readonly string[];
  /** Multiaddrs (with /p2p/<id>) of peers to connect to at start and to reconnect to: the masters. */
  readonly bootstrap?: readonly string[];
  /**
   * Cluster secret: every peer must hold the same one, peers without it cannot connect.
   * Either 32 raw bytes or a libp2p swarm key file (/key/swarm/psk/1.0.0/ ...).
   */
  readonly psk?: Uint8Array;
  /**
   * How the secret is checked. 'handshake' (default): it is bound into every Noise handshake
   * (the prologue), so a peer without it fails the handshake before it learns our identity or
   * speaks any protocol, and the bytes are encrypted once. 'pnet': libp2p's private network,
   * which also encrypts every byte a second time (XSalsa20) before Noise.
   */
  readonly secretMode?: 'handshake' | 'pnet';
  /**
   * Connections in all: inbound ones beyond it are refused, and libp2p prunes the least
   * valuable when it is passed. Default 512.
   */
  readonly maxConnections?: number;
  /** Connections one remote peer (peer id) may have open to us at once; more are refused. Default 4. */
  readonly maxConnectionsPerPeer?: number;
  /** New inbound connections one remote host (IP address) may open per second. Default 100. */
  readonly maxInboundConnectionsPerSecondPerHost?: number;
  /**
   * Streams the remote may have open on one connection, all protocols together (each protocol
   * has its own bound too, HandleOptions.maxInboundStreams); more are reset. Default 512.
   */
  readonly maxStreamsPerConnection?: number;
  /** Bound on opening a connection when the caller gives no timeout. Default 10 s. */
  readonly dialTimeoutMs?: number;
  /**
   * A Prometheus registry for libp2p's own metrics (connections, streams and bytes by protocol).
   * Only when a process serves metrics: counting costs a little on every stream.
   */
  readonly metricsRegistry?: Registry;
}

export interface RemotePeer {
  readonly peerId: string;
  /** The remote's address on this connection, with /p2p/<id>. */
  readonly addr: string;
}

/** Handles one inbound stream. If it throws or rejects, that stream is aborted. */
export type StreamHandler = (stream: Stream, remote: RemotePeer) => void | Promise<void>;

export interface HandleOptions {
  /** Streams of this protocol one connection may have open at once (libp2p default 32). */
  readonly maxInboundStreams?: number;
  /** Streams of this protocol we may open on one connection at once (libp2p default 64). */
  readonly maxOutboundStreams?: number;
}

export interface DialOptions {
  readonly signal?: AbortSignal;
  /** Bound on connecting and negotiating the protocol. Default: the peer's dialTimeoutMs. */
  readonly timeoutMs?: number;
  readonly maxOutboundStreams?: number;
  /**
   * false: send the protocol id together with the first write instead of waiting for the
   * remote's answer first — one round trip less for streams that write before they read (RPC).
   * A protocol the remote does not speak then shows up as a failed read or write, not here.
   */
  readonly negotiateFully?: boolean;
}

/**
 * Connection and stream bounds, sized for a cluster of tens of masters and storage nodes plus
 * its clients: a master or node has one connection per other process and per client process
 * using it. Each connection costs little at rest (~tens of KiB); what its streams may buffer is
 * bounded by the frame readers' receive budget (FrameReader), not by these counts.
 */
const DEFAULT_MAX_CONNECTIONS = 512;
/** One connection per peer is the norm; two when both dial at once, briefly more on a restart. */
const DEFAULT_MAX_CONNECTIONS_PER_PEER = 4;
const DEFAULT_INBOUND_CONNECTIONS_PER_SECOND_PER_HOST = 100;
/**
 * The per-protocol bounds add up to ~330 on one connection (metadata 256, chunks 64, Raft 6);
 * this bounds them all together, and streams still negotiating their protocol.
 */
const DEFAULT_MAX_STREAMS_PER_CONNECTION = 512;
const DEFAULT_DIAL_TIMEOUT_MS = 10_000;

/**
 * Peers tagged with a name starting "keep-alive" are redialled by libp2p when they disconnect;
 * bootstrap peers are the masters, which nodes must stay connected to.
 */
const BOOTSTRAP_TAG = 'keep-alive-dfs-bootstrap';

/**
 * A dfs process on the network: a libp2p node with TCP, Noise and Yamux, and nothing else (no
 * DHT, relay, mDNS, autonat, upnp or identify: peers are found from the command line and from
 * the metadata service, and addressed by multiaddrs that carry their /p2p/ id).
 */
export class DfsPeer {
  readonly peerId: string;
  readonly #node: Libp2p;
  readonly #dialTimeoutMs: number;

  private constructor(node: Libp2p, dialTimeoutMs: number) {
    this.#node = node;
    this.peerId = node.peerId.toString();
    this.#dialTimeoutMs = dialTimeoutMs;
  }

  static async create(options: PeerOptions): Promise<DfsPeer> {
    if (options.dataDir !== undefined && options.privateKey !== undefined) {
      throw new DfsError('ERR_INVALID_ARGUMENT', 'give a peer either dataDir or privateKey, not both');
    }
    const privateKey =
      options.privateKey ?? (options.dataDir !== undefined ? await loadOrCreateIdentity(options.dataDir) : await generateKeyPair('Ed25519'));
    const listen = [...(options.listen ?? [])];
    const bootstrapList = [...(options.bootstrap ?? [])];
    for (const addr of [...listen, ...bootstrapList]) parseMultiaddr(addr);
    const dialTimeoutMs = options.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS;
    const maxConnectionsPerPeer = positiveInteger('maxConnectionsPerPeer', options.maxConnectionsPerPeer ?? DEFAULT_MAX_CONNECTIONS_PER_PEER);
    const maxStreamsPerConnection = positiveInteger('maxStreamsPerConnection', options.maxStreamsPerConnection ?? DEFAULT_MAX_STREAMS_PER_CONNECTION);
    // The gater runs before the node exists; it finds the node through this.
    let started: Libp2p | undefined;
    const connectionsOf = (peer: PeerId): number => started?.getConnections(peer).length ?? 0;
    const swarmKey = options.psk === undefined ? undefined : swarmKeyFromSecret(options.psk);
    const pnet = swarmKey !== undefined && options.secretMode === 'pnet';
    const prologueBytes = swarmKey !== undefined && !pnet ? noisePrologue(swarmKey) : undefined;
    let node: Libp2p;
    try {
      // Loaded only when asked for: a client process (which serves no metrics and uses the
      // handshake secret) keeps prom-client and pnet out of its memory.
      const metrics = options.metricsRegistry === undefined ? undefined : (await import('@libp2p/prometheus-metrics')).prometheusMetrics;
      const preSharedKey = pnet ? (await import('@libp2p/pnet')).preSharedKey : undefined;
      node = await createLibp2p({
        privateKey,
        nodeInfo: { name: 'dfs' },
        addresses: { listen },
        transports: [tcp()],
        connectionEncrypters: [dfsNoise({ crypto: noiseCrypto, ...(prologueBytes ? { prologueBytes } : {}) })],
        streamMuxers: [
          yamux({
            maxInboundStreams: maxStreamsPerConnection,
            streamOptions: { maxStreamWindowSize: MAX_STREAM_WINDOW_BYTES, maxReadBufferLength: MAX_STREAM_READ_BUFFER_BYTES },
          }),
        ],
        connectionGater: {
          // Once Noise has told us who it is: a peer already at its bound gets no more.
          denyInboundEncryptedConnection: (peer: PeerId) => connectionsOf(peer) >= maxConnectionsPerPeer,
        },
        ...(preSharedKey && swarmKey ? { connectionProtector: preSharedKey({ psk: swarmKey }) } : {}),
        ...(metrics && options.metricsRegistry ? { metrics: metrics({ registry: options.metricsRegistry, collectDefaultMetrics: false, preserveExistingMetrics: true }) } : {}),
        peerDiscovery: bootstrapList.length > 0 ? [bootstrap({ list: bootstrapList, timeout: 0, tagName: BOOTSTRAP_TAG })] : [],
        connectionManager: {
          maxConnections: options.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
          dialTimeout: dialTimeoutMs,
          // Defaults are tuned for the public network (5 new connections per second per host);
          // a cluster restarting behind one NAT, or a test host, opens many more.
          inboundConnectionThreshold: options.maxInboundConnectionsPerSecondPerHost ?? DEFAULT_INBOUND_CONNECTIONS_PER_SECOND_PER_HOST,
          maxIncomingPendingConnections: 100,
        },
      });
      started = node;
      // Connections upgraded side by side all pass the gater; the ones past the bound close here.
      node.addEventListener('connection:open', (evt) => {
        const connection = evt.detail;
        if (connection.direction === 'inbound' && connectionsOf(connection.remotePeer) > maxConnectionsPerPeer) {
          connection.abort(new DfsError('ERR_OVERLOADED', `peer ${connection.remotePeer.toString()} has more than ${maxConnectionsPerPeer} connections open to us`));
        }
      });
    } catch (err) {
      throw new DfsError('ERR_INVALID_ARGUMENT', `cannot start the network peer: ${(err as Error).message}`, { cause: err });
    }
    return new DfsPeer(node, dialTimeoutMs);
  }

  /** Where other peers can reach this one, each ending in /p2p/<peerId>. */
  get listenAddrs(): string[] {
    return this.#node.getMultiaddrs().map((ma) => ma.toString());
  }

  /** Peer ids this peer currently has a connection to. */
  connectedPeers(): string[] {
    return this.#node.getPeers().map((id) => id.toString());
  }

  /** Calls `listener` whenever a connection to a new peer opens; returns the unsubscribe. */
  onPeerConnect(listener: (peerId: string) => void): () => void {
    const onConnect = (evt: CustomEvent<PeerId>): void => listener(evt.detail.toString());
    this.#node.addEventListener('peer:connect', onConnect);
    return () => this.#node.removeEventListener('peer:connect', onConnect);
  }

  /** Serves `protocol`: `handler` gets each inbound stream. One handler per protocol. */
  async handle(protocol: string, handler: StreamHandler, options: HandleOptions = {}): Promise<void> {
    if (this.#node.getProtocols().includes(protocol)) {
      throw new DfsError('ERR_INVALID_ARGUMENT', `${protocol} already has a handler on this peer`);
    }
    await this.#node.handle(
      protocol,
      async (stream: Stream, connection: Connection) => {
        const peerId = connection.remotePeer.toString();
        tagStreamPeer(stream, peerId);
        try {
          await handler(stream, { peerId, addr: connection.remoteAddr.toString() });
        } catch (err) {
          stream.abort(err instanceof Error ? err : new Error(String(err)));
        }
      },
      options,
    );
  }

  async unhandle(protocol: string): Promise<void> {
    await this.#node.unhandle(protocol);
  }

  /**
   * Opens a stream for `protocol` to `target`: a multiaddr ending in /p2p/<id> (or without, if
   * the id is not known), or a bare peer id this peer knows addresses for (a bootstrap peer).
   * Fails with ERR_PEER_UNREACHABLE (no connection), ERR_PROTOCOL (the peer does not speak the
   * protocol), ERR_STREAM_CLOSED (the connection failed during negotiation), ERR_TIMEOUT or
   * ERR_ABORTED.
   */
  async dialProtocol(target: string, protocol: string, options: DialOptions = {}): Promise<Stream> {
    const dialTarget = parseDialTarget(target);
    const signal = deadlineSignal(options.timeoutMs ?? this.#dialTimeoutMs, options.signal);
    let connection: Connection;
    try {
      connection = await this.#node.dial(dialTarget, { signal });
    } catch (err) {
      if (signal.aborted) throw errorFromAbort(signal, `dialling ${target}`);
      throw new DfsError('ERR_PEER_UNREACHABLE', `cannot reach ${target}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const stream = await connection.newStream(protocol, {
        signal,
        ...(options.maxOutboundStreams === undefined ? {} : { maxOutboundStreams: options.maxOutboundStreams }),
        ...(options.negotiateFully === undefined ? {} : { negotiateFully: options.negotiateFully }),
      });
      tagStreamPeer(stream, connection.remotePeer.toString());
      return stream;
    } catch (err) {
      if (signal.aborted) throw errorFromAbort(signal, `opening ${protocol} to ${target}`);
      const name = (err as Error).name;
      if (name === 'UnsupportedProtocolError') {
        throw new DfsError('ERR_PROTOCOL', `${target} does not support ${protocol}`, { cause: err });
      }
      if (name === 'ConnectionClosedError' || name === 'ConnectionClosingError' || name === 'MuxerClosedError') {
        throw new DfsError('ERR_PEER_UNREACHABLE', `connection to ${target} closed: ${(err as Error).message}`, { cause: err });
      }
      throw new DfsError('ERR_STREAM_CLOSED', `opening ${protocol} to ${target} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Closes every connection and listener. Streams still open are aborted. */
  async stop(): Promise<void> {
    await this.#node.stop();
  }
}

/** Starts a peer; see PeerOptions. */
export function createPeer(options: PeerOptions): Promise<DfsPeer> {
  return DfsPeer.create(options);
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new DfsError('ERR_INVALID_ARGUMENT', `${name} must be a positive integer, got ${value}`);
  return value;
}

function parseMultiaddr(addr: string): ReturnType<typeof multiaddr> {
  try {
    return multiaddr(addr);
  } catch (err) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `not a multiaddr: ${addr}`, { cause: err });
  }
}

function parseDialTarget(target: string): DialTarget {
  if (target.startsWith('/')) return parseMultiaddr(target);
  try {
    return peerIdFromString(target);
  } catch (err) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `not a multiaddr or peer id: ${target}`, { cause: err });
  }
}

/**
 * The encrypter's protocol id: Noise with AES-256-GCM as its AEAD (net/noise-crypto.ts) is not
 * the stock `/noise`, so a peer without it (another libp2p program, a dfs from before the
 * change) fails at negotiation ("could not negotiate"), not later with an authentication error
 * that would read like a wrong cluster secret.
 */
export const NOISE_PROTOCOL = '/dfs/noise-aes256gcm/1.0.0';

/** libp2p-noise under NOISE_PROTOCOL. */
function dfsNoise(init: Parameters<typeof noise>[0]): ReturnType<typeof noise> {
  const make = noise(init);
  return (components) => {
    const encrypter = make(components);
    (encrypter as { protocol: string }).protocol = NOISE_PROTOCOL;
    return encrypter;
  };
}
