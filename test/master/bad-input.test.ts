import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MetaClient } from '../../src/client/index.ts';
import { isDfsError } from '../../src/errors/index.ts';
import { type Master, startMaster } from '../../src/master/index.ts';
import { META_PROTOCOL, metaResponseSchema } from '../../src/meta/index.ts';
import { createPeer, type DfsPeer, encodeFrame, RpcChannel } from '../../src/net/index.ts';

/** A single-voter master in this process (it elects itself), and a raw client. */
let dir: string;
let master: Master;
let client: DfsPeer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfs-bad-input-'));
  client = await createPeer({});
  // The raw client holds the cluster's admin key: its requests are checked for form, not rights.
  master = await startMaster({ name: 'm1', dir, listen: ['/ip4/127.0.0.1/tcp/0'], peers: [], adminPeers: [client.peerId] });
  await master.driver.until(() => master.driver.role === 'leader', 10_000);
});

afterAll(async () => {
  await client?.stop();
  await master?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function call(request: unknown): Promise<{ ok: boolean; code?: string; message?: string }> {
  return new RpcChannel(client, master.addrs[0]!, META_PROTOCOL).call(request, metaResponseSchema, { timeoutMs: 5_000 });
}

async function callError(request: unknown): Promise<{ code: string; message: string }> {
  try {
    const r = await call(request);
    return { code: r.code ?? 'OK', message: r.message ?? '' };
  } catch (err) {
    if (isDfsError(err)) return { code: err.code, message: err.message };
    throw err;
  }
}

describe('a master given bad input', () => {
  it('refuses malformed requests with a clear error and keeps serving', async () => {
    const cases: Array<[unknown, string, RegExp]> = [
      [{ type: 'nope' }, 'ERR_PROTOCOL', /type/],
      [{ type: 'write', clientId: 'c', seq: 1, cmd: { op: 'mkdir', path: 42, parents: false } }, 'ERR_PROTOCOL', /cmd\.path/],
      [{ type: 'write', clientId: 'c', seq: -1, cmd: { op: 'mkdir', path: '/a', parents: false } }, 'ERR_PROTOCOL', /seq/],
      [{ type: 'write', clientId: 'c', seq: 1, cmd: { op: 'mkdir', path: 'relative', parents: false } }, 'ERR_INVALID_PATH', /absolute/],
      [{ type: 'write', clientId: 'c', seq: 2, cmd: { op: 'mkdir', path: '/a/../b', parents: false } }, 'ERR_INVALID_PATH', /"\.\."/],
      [{ type: 'write', clientId: 'c', seq: 3, cmd: { op: 'commitFile', path: '/f', manifest: { chunker: 'x' }, parents: true, ifAbsent: false } }, 'ERR_INVALID_MANIFEST', /chunker/],
      [{ type: 'stat', path: '/missing' }, 'ERR_NOT_FOUND', /no such file/],
      [{ type: 'list', path: '/', limit: 10_000_000 }, 'ERR_PROTOCOL', /limit/],
      [{ type: 'place', chunks: [{ id: 'not-an-id', size: 1 }] }, 'ERR_PROTOCOL', /chunks\[0\]\.id/],
    ];
    for (const [request, code, message] of cases) {
      const err = await callError(request);
      expect(err.code, JSON.stringify(request)).toBe(code);
      expect(err.message).toMatch(message);
    }
    // Nothing was applied by any of them, and good requests still work.
    expect(await call({ type: 'write', clientId: 'c', seq: 10, cmd: { op: 'mkdir', path: '/ok', parents: false } })).toMatchObject({ ok: true });
    expect((await master.service.status()).counts.entries).toBe(2); // "/" and "/ok"
  });

  it('the client reports a malformed request at once instead of retrying it until ERR_NO_QUORUM', async () => {
    const meta = new MetaClient({ peer: client, masters: [...master.addrs], timeoutMs: 10_000 });
    const started = performance.now();
    const err = await meta.list('/', { limit: 10_000_000 }).catch((e: unknown) => e);
    expect(isDfsError(err, 'ERR_PROTOCOL'), String(err)).toBe(true);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('a stream that sends garbage is closed; the master serves other streams', async () => {
    const stream = await client.dialProtocol(master.addrs[0]!, META_PROTOCOL);
    stream.send(encodeFrame(new TextEncoder().encode('{not json')));
    const closed = await new Promise<boolean>((resolve) => {
      stream.addEventListener('close', () => resolve(true), { once: true });
      setTimeout(() => resolve(false), 5_000);
    });
    expect(closed).toBe(true);
    expect(await call({ type: 'status' })).toMatchObject({ ok: true });
  });
});
