import { createServer } from 'node:net';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MetaClient } from '../../src/client/index.ts';
import { createPeer, type DfsPeer } from '../../src/net/index.ts';
import { rejection } from '../support/errors.ts';

let peer: DfsPeer;
/** A master address nobody answers on: a port just released, with a real peer id. */
let deadMaster: string;

beforeAll(async () => {
  peer = await createPeer({});
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as { port: number };
  await new Promise<void>((ok) => server.close(() => ok()));
  deadMaster = `/ip4/127.0.0.1/tcp/${port}/p2p/${peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()}`;
});

afterAll(async () => {
  await peer?.stop();
});

describe('MetaClient.close', () => {
  it('ends a request that is retrying with ERR_ABORTED at once, not at its deadline', async () => {
    const meta = new MetaClient({ peer, masters: [deadMaster], timeoutMs: 60_000, attemptTimeoutMs: 1_000 });
    const started = performance.now();
    const request = meta.leaderRequest({ type: 'status' });
    meta.close();
    const err = await rejection(request);
    expect(err.code).toBe('ERR_ABORTED');
    // Bounded by one attempt (its own timeout), never by the 60 s request deadline.
    expect(performance.now() - started).toBeLessThan(5_000);
    expect((await rejection(meta.leaderRequest({ type: 'status' }))).code).toBe('ERR_ABORTED');
  });

  it('without close, the same request retries until its deadline and reports ERR_NO_QUORUM', async () => {
    const meta = new MetaClient({ peer, masters: [deadMaster], timeoutMs: 300, attemptTimeoutMs: 100 });
    expect((await rejection(meta.leaderRequest({ type: 'status' }))).code).toBe('ERR_NO_QUORUM');
  });
});
