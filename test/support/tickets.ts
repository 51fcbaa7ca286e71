import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { newTicketClaims, signTicket } from '../../src/auth/tickets.ts';
import type { TicketOp } from '../../src/auth/tickets.ts';
import type { ChunkId } from '../../src/chunker/index.ts';
import type { DfsPeer } from '../../src/net/index.ts';
import * as chunkClient from '../../src/protocol/chunk-client.ts';
import type { ChunkCallOptions, ChunkStreams, GetChunkOptions, PutChunkResult } from '../../src/protocol/chunk-client.ts';
import type { ClusterKeySource } from '../../src/protocol/chunk-service.ts';

/**
 * A test cluster's signing key and chunk tickets signed with it, the way the leader issues them
 * (src/auth/tickets.ts), for tests whose subject is not the tickets themselves. Give a node
 * `clusterKey` (ChunkServiceOptions) and call the ticketed `putChunk`, `getChunk`, `deleteChunks`
 * and `sessionGet` below, which take the arguments the chunk client took before tickets and add a
 * valid ticket for the calling peer.
 */
export const clusterPrivateKey: PrivateKey = await generateKeyPair('Ed25519');
/** What a node that heard the cluster key holds (ChunkServiceOptions.clusterKey). */
export const clusterKey: ClusterKeySource = { publicKey: clusterPrivateKey.publicKey };
/** The key as masters announce it (heartbeat and registerNode answers' `clusterKey`). */
export const clusterKeyText = Buffer.from(publicKeyToProtobuf(clusterPrivateKey.publicKey)).toString('base64');

export interface TicketOptions {
  readonly fence?: number;
  /** Clock.now() of the "master" signing it. Default Date.now(). */
  readonly now?: number;
  readonly ttlMs?: number;
  /** Signs with another key (a forged or foreign ticket). */
  readonly key?: PrivateKey;
  /** The login user the leader issued it for (nodes share their budget per user). */
  readonly user?: string;
}

/** A ticket for `op` on `ids`, issued to `bearer` (a peer or its id). */
export function ticket(op: TicketOp, ids: string | readonly string[], bearer: DfsPeer | string, o: TicketOptions = {}): Promise<string> {
  const claims = newTicketClaims({
    op,
    ids: typeof ids === 'string' ? [ids] : ids,
    bearer: typeof bearer === 'string' ? bearer : bearer.peerId,
    now: o.now ?? Date.now(),
    ...(o.ttlMs !== undefined ? { ttlMs: o.ttlMs } : {}),
    ...(o.fence !== undefined ? { fence: o.fence } : {}),
    ...(o.user !== undefined ? { user: o.user } : {}),
  });
  return signTicket(o.key ?? clusterPrivateKey, claims);
}

/** chunk-client's putChunk with a put ticket for `peer` (the placement's). */
export async function putChunk(
  peer: DfsPeer,
  pipeline: readonly string[],
  id: ChunkId,
  data: Uint8Array | readonly Uint8Array[],
  fence: number,
  options: ChunkCallOptions & { readonly pool?: ChunkStreams } = {},
): Promise<PutChunkResult> {
  return chunkClient.putChunk(peer, pipeline, id, data, fence, await ticket('put', id, peer, { fence }), options);
}

/** chunk-client's getChunk with a get ticket for `peer`. */
export async function getChunk(peer: DfsPeer, addr: string, id: ChunkId, options: GetChunkOptions = {}): Promise<Uint8Array> {
  return chunkClient.getChunk(peer, addr, id, await ticket('get', id, peer), options);
}

/** chunk-client's deleteChunks with a delete ticket per batch for `peer` (the leader's). */
export function deleteChunks(peer: DfsPeer, addr: string, ids: readonly ChunkId[], fence: number, options: ChunkCallOptions = {}): Promise<{ deleted: number; kept: string[] }> {
  return chunkClient.deleteChunks(peer, addr, ids, fence, (batch) => ticket('delete', batch, peer, { fence }), options);
}

/** A ChunkGetSession's get with a get ticket for `peer`. */
export async function sessionGet(
  session: chunkClient.ChunkGetSession,
  peer: DfsPeer,
  addr: string,
  id: ChunkId,
  options: chunkClient.SessionGetOptions = {},
): Promise<Uint8Array[]> {
  return session.get(addr, id, await ticket('get', id, peer), options);
}
