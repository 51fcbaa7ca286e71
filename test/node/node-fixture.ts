import { randomBytes } from 'node:crypto';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { afterEach } from 'vitest';
import { loadBlake3 } from '../../src/chunker/index.ts';
import type { DfsPeer } from '../../src/net/index.ts';
import { ChunkService } from '../../src/protocol/chunk-service.ts';
import type { ChunkServiceOptions } from '../../src/protocol/chunk-service.ts';
import { ChunkStore } from '../../src/storage/index.ts';
import type { ChunkStoreOptions } from '../../src/storage/index.ts';
import { addrOf, startPeer } from '../net/peers.ts';
import { clusterKey } from '../support/tickets.ts';
import { useTempDirs } from '../support/tmp.ts';

/** Shared by the node tests: storage nodes (a ChunkService on a real store) on loopback. */

export const blake3 = await loadBlake3();
export const tempDir = useTempDirs();
export const KiB = 1024;
export const MiB = 1024 * 1024;
/** The fence of the tests' puts where fences are not what is tested. */
export const FENCE = 1;

export interface TestNode {
  readonly peer: DfsPeer;
  readonly privateKey: PrivateKey;
  readonly store: ChunkStore;
  readonly service: ChunkService;
  readonly addr: string;
}

/**
 * The storage nodes the test's nodes know (peer id → address), as the masters' node list would
 * give them: a node started here is in it unless `listed: false`.
 */
export const known = new Map<string, string>();

const cleanups: Array<() => Promise<void>> = [];
// Registered after peers.ts and tmp.ts: vitest runs after-hooks in reverse, so services stop
// and stores close before their directories are removed and their peers stopped.
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  known.clear();
});

/** A peer with a known identity key (to sign receipts), listening on loopback. */
export async function startKeyedPeer(options: { listen?: string[] } = {}): Promise<{ peer: DfsPeer; privateKey: PrivateKey }> {
  const privateKey = await generateKeyPair('Ed25519');
  const peer = await startPeer({ privateKey, ...options });
  return { peer, privateKey };
}

export async function startNode(
  options: Partial<ChunkServiceOptions> = {},
  extra: { readonly listed?: boolean; readonly store?: Partial<ChunkStoreOptions> } = {},
): Promise<TestNode> {
  const { peer, privateKey } = await startKeyedPeer();
  const store = await ChunkStore.open({ dir: await tempDir(), blake3, reserveBytes: 0, ...extra.store });
  const service = new ChunkService({ peer, privateKey, store, blake3, resolveNode: (id) => known.get(id), clusterKey, ...options });
  await service.start();
  if (extra.listed !== false) known.set(peer.peerId, addrOf(peer));
  let stopped = false;
  cleanups.push(async () => {
    if (stopped) return;
    stopped = true;
    await service.stop();
    await store.close();
  });
  return { peer, privateKey, store, service, addr: addrOf(peer) };
}

export function makeChunk(size: number): { id: string; data: Uint8Array } {
  const data = new Uint8Array(randomBytes(size));
  return { id: blake3.hashHex(data), data };
}

export const utf8 = (value: unknown): Uint8Array => new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value));

/** Records the targets `peer` dials (and still dials them). */
export function spyDials(peer: DfsPeer): string[] {
  const dialled: string[] = [];
  const dial = peer.dialProtocol.bind(peer);
  peer.dialProtocol = (target, protocol, options) => {
    dialled.push(target);
    return dial(target, protocol, options);
  };
  return dialled;
}
