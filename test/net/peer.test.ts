import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DfsError } from '../../src/errors/index.ts';
import { callRpc, formatSwarmKey, schema, serveRpc, swarmKeyFromSecret } from '../../src/net/index.ts';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { tcp } from '@libp2p/tcp';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { NOISE_PROTOCOL } from '../../src/net/peer.ts';
import { addrOf, startPeer } from './peers.ts';

const PING = '/dfs/test-ping/1.0.0';
const pong = schema.object({ pong: schema.literal(true) });

describe('private network (cluster secret)', () => {
  it.each(['handshake', 'pnet'] as const)('lets peers with the key talk and keeps out peers without it or with another key (%s)', async (secretMode) => {
    const secret = randomBytes(32);
    const member = await startPeer({ psk: secret, secretMode });
    await serveRpc(member, PING, schema.object({}), () => ({ pong: true }));

    // The same secret given as a swarm key file works too.
    const colleague = await startPeer({ listen: [], psk: formatSwarmKey(secret), secretMode });
    expect(await callRpc(colleague, addrOf(member), PING, {}, pong, { timeoutMs: 5000 })).toEqual({ pong: true });

    for (const psk of [undefined, randomBytes(32)]) {
      const stranger = await startPeer({ listen: [], secretMode, ...(psk ? { psk } : {}) });
      const start = performance.now();
      // Without the key the handshake bytes are garbage to the member: the dial fails or stalls.
      const err = await callRpc(stranger, addrOf(member), PING, {}, pong, { timeoutMs: 1000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DfsError);
      expect(['ERR_PEER_UNREACHABLE', 'ERR_TIMEOUT']).toContain((err as DfsError).code);
      expect(performance.now() - start).toBeLessThan(1500);
      expect(member.connectedPeers()).not.toContain(stranger.peerId);
    }
    // The member is unharmed and still serves its own.
    expect(await callRpc(colleague, addrOf(member), PING, {}, pong, { timeoutMs: 5000 })).toEqual({ pong: true });
  });

  it('accepts only 32-byte secrets or swarm key files', () => {
    expect(() => swarmKeyFromSecret(new Uint8Array(16))).toThrow(/32 bytes/);
    const file = formatSwarmKey(new Uint8Array(32).fill(0xab));
    expect(new TextDecoder().decode(file)).toBe(`/key/swarm/psk/1.0.0/\n/base16/\n${'ab'.repeat(32)}`);
    expect(swarmKeyFromSecret(file)).toEqual(file);
  });
});

describe('bootstrap', () => {
  it('speaks only its own Noise (AES-256-GCM under ' + NOISE_PROTOCOL + '): a stock libp2p peer fails at negotiation', async () => {
    const member = await startPeer({});
    await serveRpc(member, PING, schema.object({}), () => ({ pong: true }));
    const stock = await createLibp2p({ transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] });
    try {
      const err = await stock.dial(multiaddr(addrOf(member)), { signal: AbortSignal.timeout(5000) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      // Before the handshake: the protocol ids differ (not "decryption failed" after it).
      expect(String((err as Error).message)).toMatch(/could not negotiate \/noise/);
      expect(member.connectedPeers()).not.toContain(stock.peerId.toString());
    } finally {
      await stock.stop();
    }
  });

  it('connects to the bootstrap peers at start, so they can be called by peer id alone', async () => {
    const master = await startPeer();
    await serveRpc(master, PING, schema.object({}), () => ({ pong: true }));
    const connected = Promise.withResolvers<string>();
    const unsubscribe = master.onPeerConnect((peerId) => connected.resolve(peerId));
    const node = await startPeer({ bootstrap: [addrOf(master)] });
    expect(await connected.promise).toBe(node.peerId);
    unsubscribe();
    expect(node.connectedPeers()).toContain(master.peerId);
    expect(await callRpc(node, master.peerId, PING, {}, pong)).toEqual({ pong: true });
  });

  it('reports its listen addresses with its peer id', async () => {
    const peer = await startPeer();
    expect(peer.listenAddrs.length).toBeGreaterThan(0);
    for (const addr of peer.listenAddrs) expect(addr).toMatch(new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/[1-9][0-9]*/p2p/${peer.peerId}$`));
  });

  it('refuses malformed addresses and a second handler with ERR_INVALID_ARGUMENT', async () => {
    await expect(startPeer({ listen: ['not-a-multiaddr'] })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    const peer = await startPeer({ listen: [] });
    await expect(peer.dialProtocol('nonsense', PING)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await peer.handle(PING, () => {});
    await expect(peer.handle(PING, () => {})).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});
