import { recordUnhandledRejections } from '../support/unhandled.ts';
import { createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MetaClient } from '../../src/client/index.ts';
import { createPeer, type DfsPeer } from '../../src/net/index.ts';
import { rejection } from '../support/errors.ts';

/**
 * A frozen master (SIGSTOP) looks, from the network, like a socket the kernel accepts and
 * nobody ever speaks on: the TCP handshake completes (the listen backlog), the Noise handshake
 * never does. This server is exactly that, without a process to freeze.
 */
let peer: DfsPeer;
let silent: Server;
const held: Socket[] = [];
let frozenMaster: string;

beforeAll(async () => {
  peer = await createPeer({});
  silent = createServer((socket) => void held.push(socket.on('error', () => {})));
  await new Promise<void>((ok) => silent.listen(0, '127.0.0.1', ok));
  const { port } = silent.address() as { port: number };
  frozenMaster = `/ip4/127.0.0.1/tcp/${port}/p2p/${peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()}`;
});

afterAll(async () => {
  await peer?.stop();
  for (const s of held) s.destroy();
  await new Promise<void>((ok) => silent.close(() => ok()));
});

const unhandledNow = recordUnhandledRejections();

/** Lets any timer of the test's calls fire, then reports what went unhandled meanwhile. */
async function strayRejections(): Promise<string[]> {
  await sleep(300);
  await new Promise((ok) => setImmediate(ok));
  return unhandledNow().map((r) => (r instanceof Error ? r.message : String(r)));
}

describe('MetaClient against a master that accepts connections and never answers (frozen)', () => {
  it('statusAll reports it as a timeout in its entry, and no rejection goes unhandled', async () => {
    const meta = new MetaClient({ peer, masters: [frozenMaster], attemptTimeoutMs: 200 });
    const all = await meta.statusAll();
    expect(all).toHaveLength(1);
    expect(all[0]).toMatchObject({ addr: frozenMaster, code: 'ERR_TIMEOUT' });
    expect(all[0]!.status).toBeUndefined();
    expect(all[0]!.error).toMatch(/^ERR_TIMEOUT: /);
    expect(await strayRejections()).toEqual([]);
  });

  it('a leader request retries it until the deadline, then ERR_NO_QUORUM, and no rejection goes unhandled', async () => {
    const meta = new MetaClient({ peer, masters: [frozenMaster], timeoutMs: 700, attemptTimeoutMs: 200 });
    const err = await rejection(meta.leaderRequest({ type: 'status' }));
    expect(err.code).toBe('ERR_NO_QUORUM');
    expect(err.message).toMatch(/ERR_TIMEOUT/);
    expect(await strayRejections()).toEqual([]);
  });

  it('a stale read moves past it, and no rejection goes unhandled', async () => {
    const meta = new MetaClient({ peer, masters: [frozenMaster], attemptTimeoutMs: 200 });
    const err = await rejection(meta.list('/', { stale: true }));
    expect(err.code).toBe('ERR_NO_QUORUM');
    expect(await strayRejections()).toEqual([]);
  });
});
