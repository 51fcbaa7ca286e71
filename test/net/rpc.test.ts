import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DfsError } from '../../src/errors/index.ts';
import { callRpc, FrameReader, FrameWriter, schema, serveRpc } from '../../src/net/index.ts';
import type { DfsPeer } from '../../src/net/index.ts';
import { addrOf, startPeer } from './peers.ts';
import { rejection } from '../support/errors.ts';

const ECHO = '/dfs/test-echo/1.0.0';
const echoRequest = schema.object({
  text: schema.string({ maxLength: 1000 }),
  blob: schema.optional(schema.bytes({ maxBytes: 1 << 20 })),
});
const echoResponse = schema.object({
  text: schema.string(),
  from: schema.string(),
  blob: schema.optional(schema.bytes()),
});

async function echoServer(options: Parameters<typeof serveRpc>[4] = {}): Promise<DfsPeer> {
  const server = await startPeer();
  await serveRpc(
    server,
    ECHO,
    echoRequest,
    (request, { remote }) => ({ text: request.text.toUpperCase(), from: remote.peerId, blob: request.blob }),
    options,
  );
  return server;
}

/** Sends raw bytes as one frame on a fresh stream and returns the decoded answer frame. */
async function rawCall(client: DfsPeer, server: DfsPeer, protocol: string, payload: Uint8Array): Promise<unknown> {
  const stream = await client.dialProtocol(addrOf(server), protocol, { timeoutMs: 5000 });
  const reader = new FrameReader(stream);
  const writer = new FrameWriter(stream);
  await writer.write(payload);
  await writer.close();
  const frame = await reader.read({ signal: AbortSignal.timeout(5000) });
  return frame && JSON.parse(new TextDecoder().decode(frame.subarray()));
}


describe('rpc between two peers', () => {
  it('exchanges validated requests and responses, by address or by known peer id', async () => {
    const server = await echoServer();
    const client = await startPeer({ listen: [] });
    const blob = Uint8Array.from([0, 1, 2, 250, 255]);
    const answer = await callRpc(client, addrOf(server), ECHO, { text: 'hello', blob }, echoResponse);
    expect(answer).toEqual({ text: 'HELLO', from: client.peerId, blob });
    expect(answer.blob).toBeInstanceOf(Uint8Array);

    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => callRpc(client, server.peerId, ECHO, { text: `n${i}` }, echoResponse)),
    );
    expect(answers.map((a) => a.text)).toEqual(Array.from({ length: 20 }, (_, i) => `N${i}`));
  });

  it('answers malformed JSON and schema violations with ERR_PROTOCOL and keeps serving', async () => {
    const server = await echoServer();
    const client = await startPeer({ listen: [] });

    expect(await rawCall(client, server, ECHO, new TextEncoder().encode('{"text": '))).toMatchObject({
      error: { code: 'ERR_PROTOCOL', message: expect.stringMatching(/not JSON/) },
    });
    expect(await rawCall(client, server, ECHO, Uint8Array.of(0xff, 0xfe))).toMatchObject({ error: { code: 'ERR_PROTOCOL' } });

    const violation = await rejection(callRpc(client, addrOf(server), ECHO, { text: 5 }, echoResponse));
    expect(violation.code).toBe('ERR_PROTOCOL');
    expect(violation.message).toBe('field text: expected string, got number 5');

    const tooLong = await rejection(callRpc(client, addrOf(server), ECHO, { text: 'x'.repeat(1001) }, echoResponse));
    expect(tooLong.message).toBe('field text: expected at most 1000 characters, got 1001');

    expect(await callRpc(client, addrOf(server), ECHO, { text: 'still here' }, echoResponse)).toMatchObject({ text: 'STILL HERE' });
  });

  it('rejects a response that fails the caller schema with ERR_PROTOCOL and the field path', async () => {
    const server = await echoServer();
    const client = await startPeer({ listen: [] });
    const wrong = schema.object({ text: schema.integer() });
    const err = await rejection(callRpc(client, addrOf(server), ECHO, { text: 'a' }, wrong));
    expect(err.code).toBe('ERR_PROTOCOL');
    expect(err.message).toBe('field result.text: expected integer, got string "A"');
  });

  it('refuses an oversized request with ERR_PROTOCOL and keeps serving', async () => {
    const server = await echoServer({ maxFrameBytes: 1024 });
    const client = await startPeer({ listen: [] });
    const err = await rejection(callRpc(client, addrOf(server), ECHO, { text: 'y'.repeat(900), blob: new Uint8Array(4096) }, echoResponse));
    expect(err.code).toBe('ERR_PROTOCOL');
    expect(err.message).toMatch(/exceeds the 1024-byte limit/);
    // The caller refuses locally what its own limit forbids.
    const local = await rejection(
      callRpc(client, addrOf(server), ECHO, { text: 'z', blob: new Uint8Array(4096) }, echoResponse, { maxFrameBytes: 1000 }),
    );
    expect(local.code).toBe('ERR_PROTOCOL');
    expect(await callRpc(client, addrOf(server), ECHO, { text: 'ok' }, echoResponse)).toMatchObject({ text: 'OK' });
  });

  it('carries handler errors: known codes as themselves, other failures as ERR_INTERNAL, unknown codes as ERR_PROTOCOL', async () => {
    const server = await startPeer();
    const client = await startPeer({ listen: [] });
    const request = schema.object({ kind: schema.oneOf(['dfs', 'plain', 'bogus']) });
    await serveRpc(server, '/dfs/test-fail/1.0.0', request, (req) => {
      if (req.kind === 'dfs') throw new DfsError('ERR_NOT_LEADER', 'ask 12D3KooW...');
      throw new TypeError('boom');
    });
    // A peer answering with a code this build does not know (a newer version, say).
    await server.handle('/dfs/test-bogus/1.0.0', async (stream) => {
      const reader = new FrameReader(stream);
      await reader.read();
      const writer = new FrameWriter(stream);
      await writer.write(new TextEncoder().encode(JSON.stringify({ error: { code: 'ERR_FROM_THE_FUTURE', message: 'hm' } })));
      await writer.close();
    });
    const target = addrOf(server);
    const none = schema.unknown();
    const notLeader = await rejection(callRpc(client, target, '/dfs/test-fail/1.0.0', { kind: 'dfs' }, none));
    expect([notLeader.code, notLeader.message]).toEqual(['ERR_NOT_LEADER', 'ask 12D3KooW...']);
    const internal = await rejection(callRpc(client, target, '/dfs/test-fail/1.0.0', { kind: 'plain' }, none));
    expect([internal.code, internal.message]).toEqual(['ERR_INTERNAL', 'boom']);
    const unknown = await rejection(callRpc(client, target, '/dfs/test-bogus/1.0.0', {}, none));
    expect(unknown.code).toBe('ERR_PROTOCOL');
    expect(unknown.message).toMatch(/unknown error ERR_FROM_THE_FUTURE: hm/);
    const unsupported = await rejection(callRpc(client, target, '/dfs/test-nobody/1.0.0', {}, none));
    expect(unsupported.code).toBe('ERR_PROTOCOL');
  });

  it('bounds a slow handler: the caller times out, the handler sees its signal fire', async () => {
    const server = await startPeer();
    const client = await startPeer({ listen: [] });
    const handlerSawAbort = Promise.withResolvers<unknown>();
    await serveRpc(server, '/dfs/test-slow/1.0.0', schema.object({}), (_req, { signal }) => {
      signal.addEventListener('abort', () => handlerSawAbort.resolve(signal.reason));
      return new Promise(() => {}); // never answers
    });
    await serveRpc(server, '/dfs/test-slower/1.0.0', schema.object({}), () => new Promise(() => {}), { handlerTimeoutMs: 200 });

    const start = performance.now();
    const err = await rejection(callRpc(client, addrOf(server), '/dfs/test-slow/1.0.0', {}, schema.unknown(), { timeoutMs: 300 }));
    expect(err.code).toBe('ERR_TIMEOUT');
    expect(performance.now() - start).toBeLessThan(1500);
    expect(await handlerSawAbort.promise).toMatchObject({ code: 'ERR_STREAM_CLOSED' });

    // The server's own handler deadline answers ERR_TIMEOUT before the caller's runs out.
    const serverSide = await rejection(callRpc(client, addrOf(server), '/dfs/test-slower/1.0.0', {}, schema.unknown(), { timeoutMs: 5000 }));
    expect(serverSide.code).toBe('ERR_TIMEOUT');
    expect(serverSide.message).toMatch(/handling \/dfs\/test-slower\/1.0.0: timed out/);
  });

  it('cancels on the caller signal with ERR_ABORTED', async () => {
    const server = await startPeer();
    const client = await startPeer({ listen: [] });
    const called = Promise.withResolvers<void>();
    await serveRpc(server, '/dfs/test-hang/1.0.0', schema.object({}), () => {
      called.resolve();
      return new Promise(() => {});
    });
    const controller = new AbortController();
    const call = callRpc(client, addrOf(server), '/dfs/test-hang/1.0.0', {}, schema.unknown(), { signal: controller.signal });
    await called.promise;
    controller.abort();
    expect((await rejection(call)).code).toBe('ERR_ABORTED');
  });
});

describe('unreachable peers', () => {
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
  });

  it('fails fast with ERR_PEER_UNREACHABLE when the peer has stopped', async () => {
    const server = await echoServer();
    const client = await startPeer({ listen: [] });
    const target = addrOf(server);
    await server.stop();
    const start = performance.now();
    const err = await rejection(callRpc(client, target, ECHO, { text: 'anyone?' }, echoResponse, { timeoutMs: 2000 }));
    expect(err.code).toBe('ERR_PEER_UNREACHABLE');
    expect(performance.now() - start).toBeLessThan(2000);
  });

  it('fails with ERR_PEER_UNREACHABLE for a peer id with no known address', async () => {
    const stranger = await startPeer({ listen: [] });
    const client = await startPeer({ listen: [] });
    const err = await rejection(callRpc(client, stranger.peerId, ECHO, { text: '?' }, echoResponse, { timeoutMs: 2000 }));
    expect(err.code).toBe('ERR_PEER_UNREACHABLE');
  });

  it('times out with ERR_TIMEOUT, within its bound, against a peer that accepts but never speaks', async () => {
    const silent = createServer((socket) => sockets.push(socket));
    servers.push(silent);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as AddressInfo;
    const someone = await startPeer({ listen: [] });
    const client = await startPeer({ listen: [] });
    const start = performance.now();
    const err = await rejection(
      callRpc(client, `/ip4/127.0.0.1/tcp/${port}/p2p/${someone.peerId}`, ECHO, { text: '?' }, echoResponse, { timeoutMs: 500 }),
    );
    expect(err.code).toBe('ERR_TIMEOUT');
    expect(performance.now() - start).toBeLessThan(1500);
  });
});
