import { afterEach } from 'vitest';
import { createPeer } from '../../src/net/index.ts';
import type { DfsPeer, PeerOptions } from '../../src/net/index.ts';

const started: DfsPeer[] = [];

afterEach(async () => {
  // One at a time, newest first: two peers stopping at once each wait (500 ms, libp2p's bound)
  // for the other to acknowledge closing their shared connection.
  for (const peer of started.splice(0).reverse()) await peer.stop();
});

/** A peer listening on 127.0.0.1 (a free port), stopped after the test. */
export async function startPeer(options: Partial<PeerOptions> = {}): Promise<DfsPeer> {
  const peer = await createPeer({ listen: ['/ip4/127.0.0.1/tcp/0'], ...options });
  started.push(peer);
  return peer;
}

/** The peer's loopback address, with /p2p/<id>. */
export function addrOf(peer: DfsPeer): string {
  const addr = peer.listenAddrs.find((a) => a.startsWith('/ip4/127.0.0.1/tcp/'));
  if (!addr) throw new Error(`peer ${peer.peerId} has no loopback address: ${peer.listenAddrs.join(', ')}`);
  return addr;
}
