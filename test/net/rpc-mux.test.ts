import { describe, expect, it } from 'vitest';
import { isDfsError } from '../../src/errors/index.ts';
import { DfsError } from '../../src/errors/index.ts';
import { RpcChannel, schema, serveMuxRpc } from '../../src/net/index.ts';
import { addrOf, startPeer } from './peers.ts';

const PROTOCOL = '/dfs/test-mux/1.0.0';
const request = schema.object({ n: schema.integer(), delayMs: schema.optional(schema.integer({ min: 0 })), fail: schema.optional(schema.string()) });
const response = schema.object({ doubled: schema.integer() });

async function server(options: { maxInflightPerStream?: number } = {}) {
  const peer = await startPeer();
  let handled = 0;
  await serveMuxRpc(
    peer,
    PROTOCOL,
    request,
    async (r) => {
      handled++;
      if (r.delayMs) await new Promise((ok) => setTimeout(ok, r.delayMs));
      if (r.fail) throw new DfsError('ERR_NOT_FOUND', r.fail);
      return { doubled: r.n * 2 };
    },
    options,
  );
  return { peer, handled: () => handled };
}

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

describe('multiplexed RPC', () => {
  it('carries many concurrent calls on one stream, each answered with its own result, out of order', async () => {
    const s = await server();
    const client = await startPeer();
    const channel = new RpcChannel(client, addrOf(s.peer), PROTOCOL);
    // Slow first calls must not hold back fast later ones.
    const results = await Promise.all(Array.from({ length: 200 }, (_, n) => channel.call({ n, delayMs: n < 10 ? 50 : 0 }, response)));
    expect(results.map((r) => r.doubled)).toEqual(Array.from({ length: 200 }, (_, n) => n * 2));
    expect(s.handled()).toBe(200);
  });

  it('returns typed errors and schema violations per call, and the stream keeps working', async () => {
    const s = await server();
    const client = await startPeer();
    const channel = new RpcChannel(client, addrOf(s.peer), PROTOCOL);
    const notFound = await errorOf(channel.call({ n: 1, fail: 'no such thing' }, response));
    expect(isDfsError(notFound, 'ERR_NOT_FOUND')).toBe(true);
    const invalid = await errorOf(channel.call({ n: 'one' }, response));
    expect(isDfsError(invalid, 'ERR_PROTOCOL')).toBe(true);
    expect((invalid as Error).message).toMatch(/field n/);
    expect((await channel.call({ n: 21 }, response)).doubled).toBe(42);
  });

  it('a call that gets no answer in time fails with ERR_TIMEOUT; its late answer is ignored', async () => {
    const s = await server();
    const client = await startPeer();
    const channel = new RpcChannel(client, addrOf(s.peer), PROTOCOL);
    const started = performance.now();
    const err = await errorOf(channel.call({ n: 1, delayMs: 300 }, response, { timeoutMs: 50 }));
    expect(isDfsError(err, 'ERR_TIMEOUT')).toBe(true);
    expect(performance.now() - started).toBeLessThan(250);
    // The late answer arrives on the same stream and must not be taken for this one's.
    expect((await channel.call({ n: 5, delayMs: 400 }, response)).doubled).toBe(10);
  });

  it('refuses calls beyond the per-stream in-flight bound with ERR_OVERLOADED', async () => {
    const s = await server({ maxInflightPerStream: 4 });
    const client = await startPeer();
    const channel = new RpcChannel(client, addrOf(s.peer), PROTOCOL);
    const outcomes = await Promise.allSettled(Array.from({ length: 10 }, (_, n) => channel.call({ n, delayMs: 100 }, response)));
    const overloaded = outcomes.filter((o) => o.status === 'rejected' && isDfsError(o.reason, 'ERR_OVERLOADED')).length;
    expect(overloaded).toBe(6);
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(4);
  });

  it('when the server goes away, calls in flight fail at once and the next call fails fast', async () => {
    const s = await server();
    const client = await startPeer();
    const addr = addrOf(s.peer);
    const channel = new RpcChannel(client, addr, PROTOCOL);
    expect((await channel.call({ n: 1 }, response)).doubled).toBe(2);
    const inFlight = channel.call({ n: 2, delayMs: 5_000 }, response, { timeoutMs: 10_000 });
    const started = performance.now();
    await s.peer.stop();
    const err = await errorOf(inFlight);
    expect(isDfsError(err)).toBe(true);
    expect(performance.now() - started).toBeLessThan(3_000);
    const unreachable = await errorOf(channel.call({ n: 3 }, response, { timeoutMs: 1_000 }));
    expect(isDfsError(unreachable, 'ERR_PEER_UNREACHABLE') || isDfsError(unreachable, 'ERR_TIMEOUT')).toBe(true);
  });
});
