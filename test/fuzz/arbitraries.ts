import fc from 'fast-check';
import { CHUNKER_ID, DEFAULT_CHUNKER_PARAMS } from '../../src/chunker/index.ts';
import type { Manifest } from '../../src/meta/index.ts';

/**
 * Valid values of the wire messages, for the fuzz tests to mutate: each arbitrary here makes
 * messages the matching decoder accepts (every fuzz file checks that on its intact inputs).
 */

const HEX = '0123456789abcdef';

/** A chunk id: 64 lowercase hex digits, from a small pool (so that commands collide) or any. */
export const chunkIdArb: fc.Arbitrary<string> = fc.oneof(
  fc.integer({ min: 1, max: 8 }).map((n) => n.toString(16).padStart(64, '0')),
  fc.string({ unit: fc.constantFrom(...HEX), minLength: 64, maxLength: 64 }),
);

/** A peer id as libp2p prints it (base58btc), or close enough for the schemas. */
export const peerIdArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('12D3KooWANvRsEwvNz9giivGNdRd1CN2AWLCfQsLzumkAJjCNMRi', '12D3KooWCE7mD4L7Lwh4Vk4WAvdXb1dsg9L1ofgpAB6mqic9oZdh', 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N'),
  fc.string({ unit: fc.constantFrom(...'123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'), minLength: 1, maxLength: 52 }),
);

export const fenceArb: fc.Arbitrary<number> = fc.oneof(fc.nat(), fc.constantFrom(0, 2 ** 32, 2 ** 53 - 1));

/** A dfs path of a few short names, from a small universe (so that commands collide). */
export const pathArb: fc.Arbitrary<string> = fc
  .array(fc.constantFrom('a', 'b', 'c', 'dé', 'x y'), { minLength: 1, maxLength: 3 })
  .map((s) => `/${s.join('/')}`);

export const shortIdArb: fc.Arbitrary<string> = fc.oneof(fc.constantFrom('c1', 'c2', 'node-1', 'node-2'), fc.string({ minLength: 1, maxLength: 16 }));

export const addrArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('/ip4/127.0.0.1/tcp/4001', '/ip4/10.0.0.2/tcp/1/p2p/12D3KooWANvRsEwvNz9giivGNdRd1CN2AWLCfQsLzumkAJjCNMRi'),
  fc.string({ minLength: 1, maxLength: 40 }),
);

/** A valid manifest: chunk lengths in 1..maxSize adding up to the size. */
export const manifestArb: fc.Arbitrary<Manifest> = fc
  .array(fc.tuple(chunkIdArb, fc.integer({ min: 1, max: DEFAULT_CHUNKER_PARAMS.maxSize })), { maxLength: 5 })
  .chain((chunks) =>
    fc.string({ unit: fc.constantFrom(...HEX), minLength: 64, maxLength: 64 }).map((blake3) => ({
      chunker: CHUNKER_ID,
      params: { minSize: DEFAULT_CHUNKER_PARAMS.minSize, avgSize: DEFAULT_CHUNKER_PARAMS.avgSize, maxSize: DEFAULT_CHUNKER_PARAMS.maxSize },
      size: chunks.reduce((n, [, l]) => n + l, 0),
      blake3,
      chunks,
    })),
  );

const sigArb = fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'), minLength: 86, maxLength: 86 }).map((s) => `${s}==`);
const receiptArb = fc.record({ node: peerIdArb, sig: sigArb });
const storedAckArb = fc.record({ id: chunkIdArb, fence: fenceArb, receipts: fc.array(receiptArb, { maxLength: 3 }) });
const nodeStateArb = fc.constantFrom('pending', 'alive', 'suspect', 'dead', 'draining');

/** What a client may ask to write (src/meta/protocol.ts writeCommandSchema). */
export const writeCommandArb = fc.oneof(
  fc.record({ op: fc.constant('mkdir'), path: pathArb, parents: fc.boolean() }),
  fc.record({ op: fc.constant('rm'), path: pathArb, recursive: fc.boolean() }),
  fc.record({ op: fc.constant('mv'), from: pathArb, to: pathArb }),
  fc.record({ op: fc.constant('commitFile'), path: pathArb, manifest: manifestArb, parents: fc.boolean(), ifAbsent: fc.boolean() }),
  fc.record(
    { op: fc.constant('registerNode'), nodeId: shortIdArb, name: fc.string({ minLength: 1, maxLength: 64 }), addrs: fc.array(addrArb, { maxLength: 4 }), capacityBytes: fc.nat() },
    { requiredKeys: ['op', 'nodeId', 'addrs', 'capacityBytes'] },
  ),
  fc.record({ op: fc.constant('setNodeState'), nodeId: shortIdArb, state: nodeStateArb }),
  fc.record({ op: fc.constantFrom('admitNode', 'drainNode'), nodeId: shortIdArb }),
  fc.record({ op: fc.constant('removeNode'), nodeId: shortIdArb, force: fc.boolean() }),
);

const idsArb = fc.array(chunkIdArb, { maxLength: 4 });
const countArb = fc.oneof(fc.nat(), fc.constantFrom(0, 2 ** 53 - 1));

/** A metadata protocol request (src/meta/protocol.ts metaRequestSchema). */
export const metaRequestArb = fc.oneof(
  fc.record({ type: fc.constant('status'), withHash: fc.boolean() }, { requiredKeys: ['type'] }),
  fc.record(
    { type: fc.constant('write'), clientId: shortIdArb, seq: fc.integer({ min: 1, max: 2 ** 53 - 1 }), cmd: writeCommandArb, stored: fc.array(storedAckArb, { maxLength: 2 }), uploadId: fc.string({ minLength: 1, maxLength: 64 }) },
    { requiredKeys: ['type', 'clientId', 'seq', 'cmd'] },
  ),
  fc.record(
    {
      type: fc.constant('heartbeat'),
      nodeId: shortIdArb,
      freeBytes: countArb,
      capacityBytes: countArb,
      usedBytes: countArb,
      chunkCount: countArb,
      inflight: countArb,
      added: idsArb,
      removed: idsArb,
      nodesVersion: fc.string({ maxLength: 64 }),
      replicated: fc.array(fc.record({ id: chunkIdArb, to: shortIdArb, ok: fc.boolean(), code: fc.constantFrom('ERR_IO', 'ERR_TIMEOUT'), sig: sigArb }, { requiredKeys: ['id', 'to', 'ok'] }), { maxLength: 3 }),
    },
    { requiredKeys: ['type', 'nodeId', 'freeBytes', 'capacityBytes', 'usedBytes', 'chunkCount', 'inflight', 'added', 'removed'] },
  ),
  fc.record({ type: fc.constant('report'), nodeId: shortIdArb, ids: idsArb, first: fc.boolean(), last: fc.boolean() }),
  fc.record(
    { type: fc.constant('place'), chunks: fc.array(fc.record({ id: chunkIdArb, size: countArb }), { maxLength: 4 }), exclude: fc.array(shortIdArb, { maxLength: 3 }), uploadId: fc.string({ minLength: 1, maxLength: 64 }) },
    { requiredKeys: ['type', 'chunks'] },
  ),
  fc.record({ type: fc.constant('proveStored'), acks: fc.array(storedAckArb, { maxLength: 3 }) }),
  fc.record({ type: fc.constant('locate'), ids: idsArb }),
  fc.record({ type: fc.constant('nodes') }),
  fc.record({ type: fc.constant('scrubNode'), nodeId: shortIdArb }),
  fc.record({ type: fc.constant('badReplica'), id: chunkIdArb, nodeId: shortIdArb }),
  fc.record({ type: fc.constant('stat'), path: pathArb, stale: fc.boolean() }, { requiredKeys: ['type', 'path'] }),
  fc.record(
    { type: fc.constant('list'), path: pathArb, after: fc.string({ maxLength: 20 }), limit: fc.integer({ min: 1, max: 10_000 }), stale: fc.boolean() },
    { requiredKeys: ['type', 'path'] },
  ),
);

/** A `place` answer's value (src/meta/protocol.ts parsePlacements). */
export const placementsArb = fc.array(
  fc.oneof(
    fc.record({ id: chunkIdArb, existing: fc.constant(true as const), holders: fc.nat({ max: 5 }) }),
    fc.record({ id: chunkIdArb, targets: fc.array(addrArb, { maxLength: 3 }), fence: fenceArb, ticket: fc.string({ minLength: 1, maxLength: 120 }) }),
  ),
  { maxLength: 4 },
);

/** A metadata protocol response (src/meta/protocol.ts metaResponseSchema). */
export const metaResponseArb = fc.oneof(
  fc.record({ ok: fc.constant(true), value: fc.oneof(placementsArb, fc.jsonValue({ maxDepth: 2 })) }, { requiredKeys: ['ok'] }),
  fc.record(
    { ok: fc.constant(false), code: fc.constantFrom('ERR_NOT_LEADER', 'ERR_NOT_FOUND', 'ERR_X'), message: fc.string({ maxLength: 40 }), leaderHint: fc.option(peerIdArb), leaderAddr: fc.option(addrArb) },
    { requiredKeys: ['ok', 'code', 'message'] },
  ),
);

/** A chunk protocol request (src/protocol/chunk-protocol.ts chunkRequestSchema). */
export const chunkRequestArb = fc.oneof(
  fc.record({ op: fc.constant('put'), id: chunkIdArb, size: countArb, fence: fenceArb, pipeline: fc.array(peerIdArb, { maxLength: 3 }) }),
  fc.record({ op: fc.constant('get'), id: chunkIdArb, offset: countArb, length: countArb }, { requiredKeys: ['op', 'id'] }),
  fc.record({ op: fc.constant('has'), ids: idsArb }),
  fc.record({ op: fc.constant('delete'), ids: idsArb, fence: fenceArb }),
);

/** Chunk protocol answers: one of each ok shape, or a refusal. */
export const chunkAnswerArb = fc.oneof(
  fc.record({ ok: fc.constant(true), stored: fc.array(peerIdArb, { maxLength: 3 }), receipts: fc.array(receiptArb, { maxLength: 3 }) }),
  fc.record({ ok: fc.constant(true), size: fc.nat({ max: 1024 * 1024 }) }),
  fc.record({ ok: fc.constant(true), present: fc.array(fc.boolean(), { maxLength: 4 }) }),
  fc.record({ ok: fc.constant(true), deleted: fc.nat({ max: 4096 }), kept: idsArb }),
  fc.record(
    { ok: fc.constant(false), code: fc.constantFrom('ERR_PIPELINE', 'ERR_CHUNK_NOT_FOUND', 'ERR_SOMETHING_NEW'), message: fc.string({ maxLength: 40 }), failedTarget: addrArb, failedCode: fc.constantFrom('ERR_IO', 'ERR_NEW') },
    { requiredKeys: ['ok', 'code', 'message'] },
  ),
);

/** A heartbeat answer (src/node/control-protocol.ts heartbeatAnswerSchema). */
export const heartbeatAnswerArb = fc.record(
  {
    registered: fc.boolean(),
    fullReportWanted: fc.boolean(),
    fence: fenceArb,
    verify: idsArb,
    replicate: fc.array(fc.record({ id: chunkIdArb, to: peerIdArb, toAddr: addrArb, fence: fenceArb }), { maxLength: 3 }),
    nodes: fc.array(fc.record({ id: peerIdArb, addrs: fc.array(addrArb, { maxLength: 3 }) }), { maxLength: 3 }),
    nodesVersion: fc.string({ maxLength: 40 }),
    scrubNow: fc.boolean(),
  },
  { requiredKeys: ['registered', 'fullReportWanted', 'fence'] },
);

/** A client config file's JSON (src/cluster/client-config.ts). */
export const clientConfigArb = fc.record(
  {
    masters: fc.array(addrArb, { minLength: 1, maxLength: 3 }),
    swarmKey: fc.oneof(fc.constantFrom('swarm.key', '/etc/dfs/swarm.key'), fc.string({ minLength: 1, maxLength: 30 })),
    insecure: fc.boolean(),
    secretMode: fc.constantFrom('handshake', 'pnet'),
  },
  { requiredKeys: ['masters'] },
);

/** A command as the Raft log holds it (stamped by the leader: owner, time). */
export const logCommandArb = fc.oneof(
  fc.record({ op: fc.constant('mkdir'), path: pathArb, parents: fc.boolean(), owner: fc.constantFrom('alice', 'bob'), nowMs: fc.nat() }),
  fc.record({ op: fc.constant('commitFile'), path: pathArb, manifest: manifestArb, owner: fc.constantFrom('alice', 'bob'), nowMs: fc.nat(), parents: fc.boolean(), ifAbsent: fc.boolean() }),
  fc.record({ op: fc.constant('rm'), path: pathArb, recursive: fc.boolean() }),
  fc.record({ op: fc.constant('mv'), from: pathArb, to: pathArb, nowMs: fc.nat() }),
  fc.record(
    { op: fc.constant('registerNode'), nodeId: fc.constantFrom('n1', 'n2', 'n3'), name: fc.string({ minLength: 1, maxLength: 64 }), addrs: fc.array(addrArb, { minLength: 1, maxLength: 3 }), capacityBytes: fc.nat(), nowMs: fc.nat(), admit: fc.boolean() },
    { requiredKeys: ['op', 'nodeId', 'addrs', 'capacityBytes', 'nowMs'] },
  ),
  fc.record({ op: fc.constant('setNodeState'), nodeId: fc.constantFrom('n1', 'n2', 'n3'), state: nodeStateArb, nowMs: fc.nat() }),
  fc.record({ op: fc.constant('removeNode'), nodeId: fc.constantFrom('n1', 'n2', 'n3') }),
  fc.constant({ op: 'noop' }),
);

/** A log entry's envelope: a few clients, small sequence numbers (retries and stale requests). */
export const envelopeArb = fc.record({ clientId: fc.constantFrom('x', 'y', 'z', ''), seq: fc.integer({ min: 1, max: 6 }), cmd: logCommandArb });
