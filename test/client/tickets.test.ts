import { describe, expect, it } from 'vitest';
import { getFile, putFile } from '../../src/client/index.ts';
import type { ByteSink } from '../../src/client/index.ts';
import type { Manifest } from '../../src/meta/index.ts';
import type { MetaClient } from '../../src/meta/meta-client.ts';
import type { DfsPeer } from '../../src/net/index.ts';
import { startPeer } from '../net/peers.ts';
import { rejection } from '../support/errors.ts';
import { ticket } from '../support/tickets.ts';
import { blake3, makeChunk, startNode } from '../node/node-fixture.ts';
import type { TestNode } from '../node/node-fixture.ts';

/**
 * The client's data path with chunk tickets, against real storage nodes (ChunkService over
 * libp2p, checking every ticket) and a fake leader that issues tickets as the masters do: the
 * placement's put ticket goes with each put, the locate answer's get ticket with each get, and a
 * ticket that expired on the way is replaced by asking the leader again (a new placement, or a
 * new location batch), never by blaming the node.
 */

type Request = Record<string, unknown> & { type: string };

/** A leader for one client: places on every node (a pipeline of all), locates, commits. */
class FakeLeader {
  readonly requests: Request[] = [];
  readonly #nodes: readonly TestNode[];
  readonly #client: DfsPeer;
  readonly #files = new Map<string, Manifest>();
  readonly #holders = new Map<string, string[]>();
  #fence = 100;
  /** Lifetimes of the next tickets issued (ms; a negative one is already expired), then the default. */
  putTtls: number[] = [];
  getTtls: number[] = [];

  constructor(nodes: readonly TestNode[], client: DfsPeer) {
    this.#nodes = nodes;
    this.#client = client;
  }

  asMetaClient(): MetaClient {
    return {
      leaderRequest: (r: Request) => this.#handle(r),
      write: async (cmd: { op: string; path: string; manifest: Manifest }) => {
        this.#files.set(cmd.path, cmd.manifest);
        return { ok: true };
      },
      stat: async (path: string) => ({ kind: 'file', owner: 'u', mtimeMs: 0, size: this.#files.get(path)!.size, manifest: this.#files.get(path)! }),
    } as unknown as MetaClient;
  }

  /** A ticket issued now for `ttlMs` (a lifetime <= 0: issued long enough ago to have expired). */
  #ticket(op: 'put' | 'get', id: string, ttlMs: number | undefined, fence?: number): Promise<string> {
    const expired = ttlMs !== undefined && ttlMs <= 0;
    return ticket(op, id, this.#client, { ...(fence !== undefined ? { fence } : {}), ...(expired ? { now: Date.now() - 120_000 } : {}) });
  }

  async #handle(r: Request): Promise<unknown> {
    this.requests.push(r);
    switch (r.type) {
      case 'place': {
        const exclude = new Set((r.exclude as string[] | undefined) ?? []);
        const targets = this.#nodes.filter((n) => !exclude.has(n.peer.peerId)).map((n) => n.addr);
        return Promise.all(
          (r.chunks as Array<{ id: string }>).map(async ({ id }) => {
            const fence = ++this.#fence;
            this.#holders.set(id, targets);
            return { id, targets, fence, ticket: await this.#ticket('put', id, this.putTtls.shift(), fence) };
          }),
        );
      }
      case 'locate':
        return Promise.all((r.ids as string[]).map(async (id) => ({ id, holders: this.#holders.get(id) ?? [], ticket: await this.#ticket('get', id, this.getTtls.shift()) })));
      case 'proveStored':
      case 'badReplica':
        return { ok: true };
      default:
        throw new Error(`the fake leader does not serve ${r.type}`);
    }
  }
}

/** A file of several chunks (small chunker params), as one source buffer. */
function file(chunks: number): Uint8Array {
  return Buffer.concat(Array.from({ length: chunks }, () => makeChunk(64 * 1024).data));
}

const params = { minSize: 16 * 1024, avgSize: 32 * 1024, maxSize: 64 * 1024 };

function collect(): ByteSink & { bytes(): Buffer } {
  const parts: Buffer[] = [];
  return { write: async (pieces) => void parts.push(...pieces.map((p) => Buffer.from(p))), bytes: () => Buffer.concat(parts) };
}

async function setUp() {
  const nodes = [await startNode(), await startNode()];
  const peer = await startPeer({ listen: [] });
  const leader = new FakeLeader(nodes, peer);
  return { nodes, peer, leader, meta: leader.asMetaClient() };
}

describe('client data path with chunk tickets', () => {
  it('a put sends each placement ticket down its pipeline and names the file and its size; a get reads with the locate tickets', async () => {
    const { nodes, peer, leader, meta } = await setUp();
    const data = file(6);
    const put = await putFile([data] as unknown as AsyncIterable<Uint8Array>, '/t/file', { peer, meta, blake3, params, fileBytes: data.byteLength });
    expect(put.size).toBe(data.byteLength);
    const places = leader.requests.filter((r) => r.type === 'place');
    expect(places.length).toBeGreaterThan(0);
    for (const p of places) expect(p).toMatchObject({ path: '/t/file', fileBytes: data.byteLength });
    for (const node of nodes) expect(node.service.stats.puts).toBe(put.chunks); // the second node took the forwarded ticket
    const sink = collect();
    await getFile('/t/file', sink, { peer, meta, blake3 });
    expect(sink.bytes().equals(Buffer.from(data))).toBe(true);
    expect(leader.requests.filter((r) => r.type === 'locate')).toEqual([expect.objectContaining({ path: '/t/file' })]);
  });

  it('a get whose tickets expired on the way asks the leader for new ones, once per batch, and reads the file', async () => {
    const { peer, leader, meta } = await setUp();
    const data = file(5);
    const put = await putFile([data] as unknown as AsyncIterable<Uint8Array>, '/t/old', { peer, meta, blake3, params });
    leader.getTtls = Array.from({ length: put.chunks }, () => -1); // the first location answer's tickets are all stale
    const sink = collect();
    await getFile('/t/old', sink, { peer, meta, blake3 });
    expect(sink.bytes().equals(Buffer.from(data))).toBe(true);
    const locates = leader.requests.filter((r) => r.type === 'locate');
    expect(locates).toHaveLength(2); // the first, then one refresh for the rest of the file
    expect(locates[1]).toMatchObject({ path: '/t/old' });
  });

  it('a put whose placement ticket expired is placed again, without excluding the node that refused it', async () => {
    const { nodes, peer, leader, meta } = await setUp();
    const data = file(1);
    leader.putTtls = [-1];
    await putFile([data] as unknown as AsyncIterable<Uint8Array>, '/t/late', { peer, meta, blake3, params });
    const places = leader.requests.filter((r) => r.type === 'place');
    expect(places.length).toBeGreaterThanOrEqual(2);
    expect(places[1]).toMatchObject({ exclude: [], path: '/t/late' });
    expect(nodes[0]!.service.stats.refusals.ERR_TOKEN_EXPIRED).toBe(1);
  });

  it('a get ticket for another peer is refused by the nodes: the get fails, naming the refusal', async () => {
    const { peer, leader, meta } = await setUp();
    const data = file(1);
    await putFile([data] as unknown as AsyncIterable<Uint8Array>, '/t/theirs', { peer, meta, blake3, params });
    const thief = await startPeer({ listen: [] });
    const err = await rejection(getFile('/t/theirs', collect(), { peer: thief, meta, blake3 }));
    expect(err.code).toBe('ERR_CHUNK_NOT_FOUND');
    expect(err.message).toMatch(/ERR_FORBIDDEN/);
    expect(leader.requests.filter((r) => r.type === 'badReplica')).toEqual([]); // no node blamed for it
  });
});
