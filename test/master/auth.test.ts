import { generateKeyPair, privateKeyFromProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { describe, expect, it } from 'vitest';
import { newTokenClaims, signToken, verifyTicket } from '../../src/auth/index.ts';
import type { AclView, MetaRequest, MetaResponse, UserView } from '../../src/meta/index.ts';
import { signReceipt } from '../../src/net/receipt.ts';
import { startInProcessMasters, type InProcessMaster } from '../support/master-fixture.ts';
import { cid, manifestOf } from '../support/meta-fixtures.ts';
import { useTempDirs } from '../support/tmp.ts';

/**
 * Users, tokens, per-path grants, quotas and chunk tickets on real metadata services (three
 * in-process masters over Raft on LevelDB, called through handle() with a Noise peer id as
 * libp2p would give it). Refusals first.
 */
const tempDir = useTempDirs();
type Cluster = Awaited<ReturnType<typeof startInProcessMasters>>;

const ALICE_PEER = 'alicePeer00000000001';
const BOB_PEER = 'bobPeer0000000000001';
const CAROL_PEER = 'carolPeer00000000001';
const ANON_PEER = 'anonPeer000000000001';
const nodeKeys = await Promise.all([1, 2, 3].map(() => generateKeyPair('Ed25519')));
const nodeIds = nodeKeys.map((k) => peerIdFromPrivateKey(k).toString());
const heartbeat = (nodeId: string, added: string[] = []): MetaRequest => ({ type: 'heartbeat', nodeId, freeBytes: 1e12, capacityBytes: 1e12, usedBytes: 0, chunkCount: 0, inflight: 0, added, removed: [] });

let seq = 0;
/** A request as `peerId` with `token`. */
function as(m: InProcessMaster, peerId: string, token: string | undefined) {
  return (request: MetaRequest): Promise<MetaResponse> => m.service.handle(token === undefined ? request : { ...request, token }, { peerId });
}
const write = (cmd: Extract<MetaRequest, { type: 'write' }>['cmd']): MetaRequest => ({ type: 'write', clientId: 'auth-test', seq: ++seq, cmd });
/** What the masters' own identity does (an admin of everything). */
const asMaster = (m: InProcessMaster) => as(m, m.id, undefined);

async function withCluster(fn: (c: Cluster, leader: InProcessMaster) => Promise<void>, options: Parameters<typeof startInProcessMasters>[1] = {}): Promise<void> {
  const c = await startInProcessMasters(() => tempDir(), options);
  try {
    await fn(c, await c.ready());
  } finally {
    await c.stop();
  }
}

async function threeLiveNodes(m: InProcessMaster): Promise<void> {
  for (const nodeId of nodeIds) {
    const r = await m.service.handle({ type: 'write', clientId: nodeId, seq: 1, cmd: { op: 'registerNode', nodeId, addrs: ['/ip4/127.0.0.1/tcp/1'], capacityBytes: 1e12 } }, { peerId: nodeId });
    expect(r.ok).toBe(true);
    await m.service.handle(heartbeat(nodeId), { peerId: nodeId });
    await m.service.handle({ type: 'report', nodeId, ids: [], first: true, last: true }, { peerId: nodeId });
  }
}

describe('identity: every request needs a valid login (negative cases)', () => {
  it('no token, an expired one, one of another key, a tampered one, a disabled or revoked user: every operation refused', async () => {
    await withCluster(async (c, leader) => {
      const good = await c.login('alice', ['writer'], ALICE_PEER);
      const key = privateKeyFromProtobuf(Buffer.from(leader.machine.state.authKey!, 'base64'));
      const gen = leader.machine.state.user('alice')!.gen;
      const now = Date.now();
      const expired = await signToken(key, newTokenClaims({ user: 'alice', roles: ['writer'], gen, now: now - 20_000, ttlMs: 10_000 }));
      const foreign = await signToken(await generateKeyPair('Ed25519'), newTokenClaims({ user: 'alice', roles: ['admin'], gen, now }));
      const [payload, sig] = good.split('.') as [string, string];
      const forgedClaims = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), roles: ['admin'] })).toString('base64url');
      const tampered = `${forgedClaims}.${sig}`;
      const operations: MetaRequest[] = [
        { type: 'stat', path: '/' },
        { type: 'list', path: '/' },
        write({ op: 'mkdir', path: '/x', parents: true }),
        { type: 'place', chunks: [{ id: cid(1), size: 10 }], path: '/f' },
        { type: 'locate', ids: [cid(1)], path: '/f' },
        { type: 'users' },
        { type: 'acl', path: '/' },
        { type: 'whoami' },
        { type: 'nodes' },
        write({ op: 'grant', path: '/', principal: 'alice', level: 'admin' }),
        write({ op: 'addUser', name: 'mallory', password: 'pw-mallory-123', roles: ['admin'] }),
      ];
      const expectRefused = async (token: string | undefined, code: string, why: string): Promise<void> => {
        for (const request of operations) {
          const r = await as(leader, ALICE_PEER, token)(request);
          expect(r, `${why}: ${request.type} ${'cmd' in request ? request.cmd.op : ''}`).toMatchObject({ ok: false, code });
        }
      };
      await expectRefused(undefined, 'ERR_UNAUTHENTICATED', 'no token');
      await expectRefused(expired, 'ERR_TOKEN_EXPIRED', 'expired');
      await expectRefused(foreign, 'ERR_UNAUTHENTICATED', 'another key');
      await expectRefused(tampered, 'ERR_UNAUTHENTICATED', 'tampered');
      expect(leader.machine.state.user('mallory')).toBeUndefined();
      // The genuine token works...
      expect(await as(leader, ALICE_PEER, good)({ type: 'whoami' })).toMatchObject({ ok: true, value: { user: 'alice', roles: ['writer'], via: 'token' } });
      // ...until the user is disabled,
      expect(await asMaster(leader)(write({ op: 'setUserDisabled', name: 'alice', disabled: true }))).toMatchObject({ ok: true });
      await expectRefused(good, 'ERR_UNAUTHENTICATED', 'disabled');
      expect(await as(leader, ALICE_PEER, undefined)({ type: 'login', user: 'alice', password: 'pw-alice-0123' })).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
      // and enabled again: tokens from before the disable stay revoked (the generation moved on).
      expect(await asMaster(leader)(write({ op: 'setUserDisabled', name: 'alice', disabled: false }))).toMatchObject({ ok: true });
      await expectRefused(good, 'ERR_UNAUTHENTICATED', 'revoked by disable');
      const again = await c.login('alice', ['writer'], ALICE_PEER);
      expect(await as(leader, ALICE_PEER, again)({ type: 'stat', path: '/' })).toMatchObject({ ok: true });
      // revokeTokens (log out everywhere) of oneself.
      expect(await as(leader, ALICE_PEER, again)(write({ op: 'revokeTokens', name: 'alice' }))).toMatchObject({ ok: true });
      await expectRefused(again, 'ERR_UNAUTHENTICATED', 'revoked');
      // Anonymous peers may still ask for status and log in.
      expect(await as(leader, ANON_PEER, undefined)({ type: 'status' })).toMatchObject({ ok: true });
      // Refusals are on the audit log, naming peer and operation, never the token (a burst of 20
      // lines a peer, then 2 a second with a count of those left out: see 'refusal lines').
      const refusals = c.logger.records.filter((r) => r.fields.component === 'audit' && r.fields.event === 'refused');
      expect(refusals.length).toBeGreaterThanOrEqual(20);
      expect(refusals.some((r) => r.fields.peer === ALICE_PEER && r.fields.op === 'stat')).toBe(true);
      expect(JSON.stringify(c.logger.records)).not.toContain(good);
    });
  });

  it('a client-filled user name is ignored: the owner of a new entry is the token\'s user', async () => {
    await withCluster(async (c, leader) => {
      const bob = await c.login('bob', ['writer'], BOB_PEER);
      const r = await leader.service.handle({ type: 'write', clientId: 'b', seq: 1, user: 'admin', cmd: { op: 'mkdir', path: '/b', parents: false }, token: bob } as MetaRequest, { peerId: BOB_PEER });
      expect(r.ok).toBe(true);
      expect(leader.machine.state.stat('/b')?.owner).toBe('bob');
    });
  });

  it('a token is bound to nothing but its signature: another peer presenting it is that user (so tokens are secrets, never logged)', async () => {
    await withCluster(async (c, leader) => {
      const bob = await c.login('bob', ['reader'], BOB_PEER);
      expect(await as(leader, CAROL_PEER, bob)({ type: 'whoami' })).toMatchObject({ ok: true, value: { user: 'bob' } });
    });
  });
});

describe('roles and grants (src/auth/policy.ts is the one policy)', () => {
  it('a reader reads but cannot commit, rm or mv; roles are the CURRENT ones', async () => {
    await withCluster(async (c, leader) => {
      expect(await asMaster(leader)(write({ op: 'mkdir', path: '/data/d', parents: true }))).toMatchObject({ ok: true });
      const token = await c.login('rita', ['reader'], ALICE_PEER);
      const rita = as(leader, ALICE_PEER, token);
      expect(await rita({ type: 'list', path: '/data' })).toMatchObject({ ok: true });
      for (const cmd of [
        { op: 'mkdir', path: '/data/e', parents: false },
        { op: 'rm', path: '/data/d', recursive: true },
        { op: 'mv', from: '/data/d', to: '/data/e' },
        { op: 'commitFile', path: '/data/f', manifest: manifestOf([[cid(1), 10]]), parents: false, ifAbsent: false },
      ] as const) {
        expect(await rita(write(cmd)), cmd.op).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      }
      expect(await rita({ type: 'place', chunks: [{ id: cid(1), size: 10 }], path: '/data/f' })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(await rita({ type: 'place', chunks: [{ id: cid(1), size: 10 }] })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(await rita({ type: 'users' })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(leader.machine.state.stat('/data/d')).toBeDefined();
    });
  });

  it('grants inherit down directories, restrict role defaults, and a revoke applies to the very next operation', async () => {
    await withCluster(async (c, leader) => {
      const master = asMaster(leader);
      expect(await master(write({ op: 'mkdir', path: '/proj/deep/er', parents: true }))).toMatchObject({ ok: true });
      const alice = as(leader, ALICE_PEER, await c.login('alice', [], ALICE_PEER));
      const bob = as(leader, BOB_PEER, await c.login('bob', ['writer'], BOB_PEER));
      // No role, no grant: nothing.
      expect(await alice({ type: 'stat', path: '/proj' })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      // A writer writes anywhere unrestricted.
      expect(await bob({ type: 'stat', path: '/proj/deep' })).toMatchObject({ ok: true });
      expect(await master(write({ op: 'grant', path: '/proj', principal: 'alice', level: 'write' }))).toMatchObject({ ok: true });
      // Inherited below /proj:
      expect(await alice({ type: 'stat', path: '/proj/deep/er' })).toMatchObject({ ok: true });
      expect(await alice(write({ op: 'mkdir', path: '/proj/deep/er/mine', parents: false }))).toMatchObject({ ok: true });
      expect(await alice({ type: 'stat', path: '/' })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      // /proj is now restricted: bob's writer role no longer applies there, but still elsewhere.
      const refused = await bob({ type: 'stat', path: '/proj/deep' });
      expect(refused).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(refused.message).toMatch(/dfs grant \/proj\/deep bob read/);
      expect(await bob(write({ op: 'mkdir', path: '/other', parents: false }))).toMatchObject({ ok: true });
      const acl = (await master({ type: 'acl', path: '/proj/deep' })).value as AclView;
      expect(acl).toEqual({ path: '/proj/deep', owner: 'root', grants: [{ path: '/proj', principal: 'alice', level: 'write', inherited: true }] });
      // The revoke applies at once.
      expect(await master(write({ op: 'revoke', path: '/proj', principal: 'alice' }))).toMatchObject({ ok: true });
      expect(await alice({ type: 'stat', path: '/proj/deep/er' })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      // Grants to a role: everyone with it.
      expect(await master(write({ op: 'grant', path: '/proj', principal: '@writer', level: 'read' }))).toMatchObject({ ok: true });
      expect(await bob({ type: 'stat', path: '/proj/deep' })).toMatchObject({ ok: true });
      expect(await bob(write({ op: 'mkdir', path: '/proj/x', parents: false }))).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      const audit = c.logger.records.filter((r) => r.fields.component === 'audit' && (r.fields.event === 'grant' || r.fields.event === 'revoke'));
      expect(audit.map((r) => [r.fields.event, r.fields.principal, r.fields.ok])).toEqual([
        ['grant', 'alice', true],
        ['revoke', 'alice', true],
        ['grant', '@writer', true],
      ]);
    });
  });

  it('the owner of an entry may grant on it; someone else may not', async () => {
    await withCluster(async (c, leader) => {
      const carol = as(leader, CAROL_PEER, await c.login('carol', ['writer'], CAROL_PEER));
      const bob = as(leader, BOB_PEER, await c.login('bob', ['writer'], BOB_PEER));
      const dave = as(leader, ALICE_PEER, await c.login('dave', [], ALICE_PEER));
      expect(await carol(write({ op: 'mkdir', path: '/carol', parents: false }))).toMatchObject({ ok: true });
      expect(await bob(write({ op: 'grant', path: '/carol', principal: 'bob', level: 'admin' }))).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(await bob({ type: 'acl', path: '/carol' })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(await carol(write({ op: 'grant', path: '/carol', principal: 'dave', level: 'read' }))).toMatchObject({ ok: true });
      expect(await dave({ type: 'stat', path: '/carol' })).toMatchObject({ ok: true });
      expect(await dave(write({ op: 'mkdir', path: '/carol/x', parents: false }))).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      // Grants to a user that does not exist, or on a path that does not: refused.
      expect(await carol(write({ op: 'grant', path: '/carol', principal: 'nobody', level: 'read' }))).toMatchObject({ ok: false, code: 'ERR_NOT_FOUND' });
    });
  });

  it('users: admin only, except changing one\'s own password with the old one', async () => {
    await withCluster(async (c, leader) => {
      const bobToken = await c.login('bob', ['writer'], BOB_PEER, 'old-password-1');
      const bob = as(leader, BOB_PEER, bobToken);
      expect(await bob(write({ op: 'addUser', name: 'eve', password: 'pw-eve-00001', roles: ['admin'] }))).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(await bob(write({ op: 'setUserRoles', name: 'bob', roles: ['admin'] }))).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(await bob(write({ op: 'setPassword', name: 'bob', password: 'new-password-2' }))).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(await bob(write({ op: 'setPassword', name: 'bob', password: 'new-password-2', oldPassword: 'wrong-one' }))).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      expect(await bob(write({ op: 'setPassword', name: 'bob', password: 'new-password-2', oldPassword: 'old-password-1' }))).toMatchObject({ ok: true });
      // A password change logs bob out everywhere.
      expect(await bob({ type: 'whoami' })).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
      expect(await as(leader, BOB_PEER, undefined)({ type: 'login', user: 'bob', password: 'new-password-2' })).toMatchObject({ ok: true });
      const users = (await asMaster(leader)({ type: 'users' })).value as UserView[];
      expect(users).toEqual([{ name: 'bob', roles: ['writer'], disabled: false, usage: { bytes: 0, files: 0 } }]);
      expect(JSON.stringify(users)).not.toMatch(/argon2/);
    });
  });
});

describe('logins are rate-limited', () => {
  it('per user and per peer: after the free failures even the right password waits', async () => {
    await withCluster(async (c, leader) => {
      await c.login('alice', ['reader'], ALICE_PEER, 'right-password');
      const anon = as(leader, ANON_PEER, undefined);
      for (let i = 0; i < 6; i++) {
        const r = await anon({ type: 'login', user: 'alice', password: `wrong-${i}` });
        expect(r).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
        expect(r.message).toMatch(/wrong user name or password/);
      }
      const locked = await anon({ type: 'login', user: 'alice', password: 'right-password' });
      expect(locked).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
      expect(locked.message).toMatch(/too many failed logins for user alice: try again in \d+ s/);
      // Another peer is held off too: the user is locked, not only the peer.
      expect((await as(leader, CAROL_PEER, undefined)({ type: 'login', user: 'alice', password: 'right-password' })).message).toMatch(/too many failed logins/);
      const lines = c.logger.records.filter((r) => r.fields.component === 'audit' && r.fields.event === 'login');
      expect(lines.filter((r) => r.fields.ok === false)).toHaveLength(8);
      expect(JSON.stringify(lines)).not.toMatch(/wrong-|right-password/);
    });
  });
});

describe('refusal lines', () => {
  it('a peer flooding refused requests gets a few audit lines, not one each; the next line says how many were left out', async () => {
    await withCluster(async (c, leader) => {
      const anon = as(leader, ANON_PEER, undefined);
      const before = c.logger.records.filter((r) => r.fields.peer === ANON_PEER).length;
      for (let i = 0; i < 300; i++) expect(await anon({ type: 'list', path: '/' })).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
      const lines = c.logger.records.filter((r) => r.fields.peer === ANON_PEER).length - before;
      expect(lines).toBeGreaterThan(0);
      expect(lines).toBeLessThan(40);
      // Another peer is logged as usual meanwhile.
      expect(await as(leader, BOB_PEER, undefined)({ type: 'list', path: '/' })).toMatchObject({ ok: false });
      expect(c.logger.records.some((r) => r.fields.peer === BOB_PEER && r.fields.event === 'refused')).toBe(true);
      // Once the peer's budget refills, its next line counts what was left out.
      await new Promise((r) => setTimeout(r, 600));
      await anon({ type: 'list', path: '/' });
      const last = c.logger.records.filter((r) => r.fields.peer === ANON_PEER).at(-1)!;
      expect(last.fields.unlogged).toBeGreaterThan(200);
    });
  });

  it('failed logins from one peer in a loop get a few audit lines, not one each', async () => {
    await withCluster(async (c, leader) => {
      const anon = as(leader, ANON_PEER, undefined);
      for (let i = 0; i < 100; i++) expect(await anon({ type: 'login', user: `nobody${i}`, password: 'x' })).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
      const lines = c.logger.records.filter((r) => r.fields.peer === ANON_PEER && r.fields.event === 'login');
      expect(lines.length).toBeGreaterThan(0);
      expect(lines.length).toBeLessThan(40);
    });
  });
});

describe('quotas', () => {
  it('a put over quota is refused at place, before any chunk is sent, and at commit', async () => {
    await withCluster(async (c, leader) => {
      await threeLiveNodes(leader);
      const token = await c.login('alice', ['writer'], ALICE_PEER);
      const alice = as(leader, ALICE_PEER, token);
      expect(await asMaster(leader)(write({ op: 'setQuota', user: 'alice', maxBytes: 100, maxFiles: 10 }))).toMatchObject({ ok: true });
      const over = await alice({ type: 'place', chunks: [{ id: cid(1), size: 60 }], path: '/big', fileBytes: 120 });
      expect(over).toMatchObject({ ok: false, code: 'ERR_QUOTA' });
      expect(over.message).toMatch(/quota exceeded.*ask an admin to raise the quota/);
      // No placement was made: no fence, no ticket, nothing promised.
      expect(leader.service.dataPlane!.uploads.promisedChunks().size).toBe(0);
      // Without the size (or with a smaller one), the leader counts what the upload placed so
      // far: small batches do not get past the quota either.
      const first = await alice({ type: 'place', chunks: [{ id: cid(1), size: 60 }], path: '/big', uploadId: 'u1', fileBytes: 0 });
      expect(first.ok).toBe(true);
      expect(await alice({ type: 'place', chunks: [{ id: cid(2), size: 60 }], path: '/big', uploadId: 'u1' })).toMatchObject({ ok: false, code: 'ERR_QUOTA' });
      // Nor does a second upload beside the first one.
      expect(await alice({ type: 'place', chunks: [{ id: cid(3), size: 60 }], path: '/other', uploadId: 'u2' })).toMatchObject({ ok: false, code: 'ERR_QUOTA' });
      // The commit is checked again by apply (the authoritative check): placed under a larger
      // quota, committed under a smaller one, it is refused.
      expect(await asMaster(leader)(write({ op: 'setQuota', user: 'alice', maxBytes: 1000, maxFiles: 10 }))).toMatchObject({ ok: true });
      const second = await alice({ type: 'place', chunks: [{ id: cid(2), size: 60 }], path: '/big', uploadId: 'u1' });
      expect(second.ok).toBe(true);
      expect(await asMaster(leader)(write({ op: 'setQuota', user: 'alice', maxBytes: 100, maxFiles: 10 }))).toMatchObject({ ok: true });
      const fences = [first, second].map((placed) => (placed.value as Array<{ fence: number }>)[0]!.fence);
      const stored = await Promise.all(
        [cid(1), cid(2)].map(async (id, i) => ({ id, fence: fences[i]!, receipts: await Promise.all(nodeKeys.map((k) => signReceipt(k, id, fences[i]!))) })),
      );
      const commit = await alice({ ...write({ op: 'commitFile', path: '/big', manifest: manifestOf([[cid(1), 60], [cid(2), 60]]), parents: false, ifAbsent: false }), stored, uploadId: 'u1' } as MetaRequest);
      expect(commit).toMatchObject({ ok: false, code: 'ERR_QUOTA' });
      expect(leader.machine.state.stat('/big')).toBeUndefined();
      // Within quota: fine, and usage is counted.
      expect(await alice({ ...write({ op: 'commitFile', path: '/small', manifest: manifestOf([[cid(1), 60]]), parents: false, ifAbsent: false }), uploadId: 'u1' } as MetaRequest)).toMatchObject({ ok: true });
      expect(leader.machine.state.usage('alice')).toEqual({ bytes: 60, files: 1 });
      expect(c.logger.records.filter((r) => r.fields.component === 'audit' && r.fields.code === 'ERR_QUOTA').length).toBeGreaterThanOrEqual(2);
    });
  });
});

describe('chunk tickets', () => {
  it('a commit retried after it applied (its answer lost) ends its upload, as the first try does', async () => {
    await withCluster(async (c, leader) => {
      await threeLiveNodes(leader);
      const token = await c.login('alice', ['writer'], ALICE_PEER);
      const alice = as(leader, ALICE_PEER, token);
      const placed = await alice({ type: 'place', chunks: [{ id: cid(9), size: 10 }], path: '/r', fileBytes: 10, uploadId: 'ur' });
      const [p] = placed.value as Array<{ id: string; fence: number }>;
      const stored = [{ id: cid(9), fence: p!.fence, receipts: await Promise.all(nodeKeys.map((k) => signReceipt(k, cid(9), p!.fence))) }];
      const commit = { ...write({ op: 'commitFile', path: '/r', manifest: manifestOf([[cid(9), 10]]), parents: false, ifAbsent: false }), stored, uploadId: 'ur' } as MetaRequest;
      expect(await alice(commit)).toMatchObject({ ok: true });
      // Between the tries the client placed under the same upload again (say, a retry loop).
      expect((await alice({ type: 'place', chunks: [{ id: cid(9), size: 10 }], path: '/r', fileBytes: 10, uploadId: 'ur' })).ok).toBe(true);
      expect(leader.service.dataPlane!.uploads.openBy(ALICE_PEER)).toBe(1);
      expect(await alice(commit)).toMatchObject({ ok: true }); // the same clientId and seq: the first answer
      expect(leader.service.dataPlane!.uploads.openBy(ALICE_PEER)).toBe(0);
    });
  });

  it('place, locate and replicate hand out tickets the cluster key verifies, naming bearer, op, chunk and fence', async () => {
    await withCluster(async (c, leader) => {
      await threeLiveNodes(leader);
      const token = await c.login('alice', ['writer'], ALICE_PEER);
      const alice = as(leader, ALICE_PEER, token);
      const publicKey = privateKeyFromProtobuf(Buffer.from(leader.machine.state.authKey!, 'base64')).publicKey;
      const placed = await alice({ type: 'place', chunks: [{ id: cid(5), size: 10 }], path: '/t', fileBytes: 10, uploadId: 'u' });
      const [p] = placed.value as Array<{ id: string; fence: number; ticket: string }>;
      const now = Date.now();
      expect(verifyTicket(p!.ticket, { publicKey, now, op: 'put', chunkId: cid(5), bearerPeerId: ALICE_PEER, fence: p!.fence })).toMatchObject({ ok: true, claims: { op: 'put', ids: [cid(5)], bearer: ALICE_PEER, fence: p!.fence, user: 'alice' } });
      expect(verifyTicket(p!.ticket, { publicKey, now, op: 'put', chunkId: cid(5), bearerPeerId: BOB_PEER, fence: p!.fence })).toMatchObject({ ok: false, reason: 'wrong-bearer' });
      expect(verifyTicket(p!.ticket, { publicKey, now, op: 'get', chunkId: cid(5), bearerPeerId: ALICE_PEER })).toMatchObject({ ok: false, reason: 'wrong-op' });
      const stored = [{ id: cid(5), fence: p!.fence, receipts: await Promise.all(nodeKeys.map((k) => signReceipt(k, cid(5), p!.fence))) }];
      expect(await alice({ ...write({ op: 'commitFile', path: '/t', manifest: manifestOf([[cid(5), 10]]), parents: false, ifAbsent: false }), stored, uploadId: 'u' } as MetaRequest)).toMatchObject({ ok: true });
      // locate: read on the path, and only that file's chunks.
      const located = await alice({ type: 'locate', ids: [cid(5)], path: '/t' });
      const [l] = located.value as Array<{ id: string; holders: string[]; ticket: string }>;
      expect(l!.holders).toHaveLength(3);
      expect(verifyTicket(l!.ticket, { publicKey, now, op: 'get', chunkId: cid(5), bearerPeerId: ALICE_PEER })).toMatchObject({ ok: true, claims: { user: 'alice' } });
      expect(await alice({ type: 'locate', ids: [cid(5), cid(6)], path: '/t' })).toMatchObject({ ok: false, code: 'ERR_FILE_CHANGED' });
      expect(await alice({ type: 'locate', ids: [cid(5)] })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      // replicate commands in a heartbeat answer: bearer is the node told to copy.
      const plane = leader.service.dataPlane!;
      plane.nodes.queueReplicate(nodeIds[0]!, { id: cid(5), to: nodeIds[1]!, toAddr: '/ip4/127.0.0.1/tcp/1', fence: 77 });
      const hb = await leader.service.handle(heartbeat(nodeIds[0]!), { peerId: nodeIds[0]! });
      const answer = hb.value as { clusterKey: string; replicate: Array<{ id: string; fence: number; ticket: string }> };
      expect(answer.clusterKey).toMatch(/^[A-Za-z0-9+/]+=*$/);
      expect(answer.replicate).toHaveLength(1);
      expect(verifyTicket(answer.replicate[0]!.ticket, { publicKey, now, op: 'replicate', chunkId: cid(5), bearerPeerId: nodeIds[0]!, fence: 77 })).toMatchObject({ ok: true });
      // A delete ticket (what GC and trims send): bearer the leader, the delete's fence.
      const del = await leader.service.access.ticket('delete', [cid(5), cid(6)], 'leaderPeer0000000001', 9);
      expect(verifyTicket(del, { publicKey, now, op: 'delete', chunkId: cid(6), bearerPeerId: 'leaderPeer0000000001', fence: 9 })).toMatchObject({ ok: true });
    });
  });
});

describe('per-peer limits (issue 12)', () => {
  it('a peer with too many uploads open gets ERR_OVERLOADED; others are unaffected', async () => {
    await withCluster(
      async (c, leader) => {
        await threeLiveNodes(leader);
        const alice = as(leader, ALICE_PEER, await c.login('alice', ['writer'], ALICE_PEER));
        const bob = as(leader, BOB_PEER, await c.login('bob', ['writer'], BOB_PEER));
        for (let i = 0; i < 3; i++) expect(await alice({ type: 'place', chunks: [{ id: cid(i + 1), size: 1 }], uploadId: `u${i}` })).toMatchObject({ ok: true });
        expect(await alice({ type: 'place', chunks: [{ id: cid(9), size: 1 }], uploadId: 'u3' })).toMatchObject({ ok: false, code: 'ERR_OVERLOADED' });
        // An upload already open goes on; another peer's are its own.
        expect(await alice({ type: 'place', chunks: [{ id: cid(9), size: 1 }], uploadId: 'u1' })).toMatchObject({ ok: true });
        expect(await bob({ type: 'place', chunks: [{ id: cid(9), size: 1 }], uploadId: 'u3' })).toMatchObject({ ok: true });
        // A refused commit's upload stays open (the client may retry): it counts as one too.
        for (let i = 0; i < 2; i++) {
          const commit = await bob({ ...write({ op: 'commitFile', path: `/c${i}`, manifest: manifestOf([[cid(20 + i), 1]]), parents: false, ifAbsent: false }), uploadId: `c${i}` } as MetaRequest);
          expect(commit.ok).toBe(false);
        }
        expect(await bob({ type: 'place', chunks: [{ id: cid(9), size: 1 }], uploadId: 'u4' })).toMatchObject({ ok: false, code: 'ERR_OVERLOADED' });
      },
      { maxUploadsPerPeer: 3 },
    );
  });

  it('status with a state hash and bad-replica reports are rate-limited per peer', async () => {
    await withCluster(async (c, leader) => {
      const anon = as(leader, ANON_PEER, undefined);
      // Only an admin may ask for the state hash (it costs a pass over the whole state) ...
      expect(await anon({ type: 'status', withHash: true })).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
      expect(await anon({ type: 'status' })).toMatchObject({ ok: true });
      // ... and not often.
      const adminToken = await c.login('ops', ['admin'], CAROL_PEER);
      const writerToken = await c.login('alice', ['writer'], ALICE_PEER);
      expect(await as(leader, ALICE_PEER, writerToken)({ type: 'status', withHash: true })).toMatchObject({ ok: false, code: 'ERR_FORBIDDEN' });
      const admin = as(leader, CAROL_PEER, adminToken);
      let refused = 0;
      for (let i = 0; i < 40; i++) if (!(await admin({ type: 'status', withHash: true })).ok) refused++;
      expect(refused).toBeGreaterThan(0);
      // The limit is per peer: the same admin from another peer is served.
      expect(await as(leader, BOB_PEER, adminToken)({ type: 'status', withHash: true })).toMatchObject({ ok: true });
      expect(await anon({ type: 'badReplica', id: cid(1), nodeId: nodeIds[0]! })).toMatchObject({ ok: false, code: 'ERR_UNAUTHENTICATED' });
    });
  });
});
