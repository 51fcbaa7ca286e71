import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MetaClient } from '../../src/client/index.ts';
import { LocalCluster } from '../../src/cluster/index.ts';
import { startTestCluster, type TestCluster } from '../support/cluster.ts';

/**
 * A local cluster's clients speak with its admin key (the masters take that key for user admin),
 * and `bootstrapAdmin` makes the first user. One master, no storage nodes.
 */
describe('LocalCluster: the admin key and the first user', () => {
  let t: TestCluster;
  beforeAll(async () => {
    t = await startTestCluster({ masters: 1, nodes: 0 });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('many withClient calls at once share one admin peer: none is refused for holding too many connections under one peer id', async () => {
    // Eight peers with the same identity at once would be over a master's per-peer connection
    // limit (4); calls at the same time share one peer instead.
    const results = await Promise.all(Array.from({ length: 8 }, () => t.client(async (c) => (await c.statusAll()).map((s) => s.code ?? 'ok'))));
    expect(results.flat()).toEqual(Array.from({ length: 8 }, () => 'ok'));
    // The shared peer is stopped after the last call: a later call gets a fresh one that works.
    expect((await t.client((c) => c.waitForLeader(5_000))).role).toBe('leader');
  });

  it('withClient is the admin (by key, not by a name the client sends)', async () => {
    expect(await t.client((c) => c.whoami())).toMatchObject({ user: 'admin', roles: ['admin'], via: 'admin-key' });
  });

  it('bootstrapAdmin makes user admin once, with a fresh random password that logs in; a second call leaves it alone', async () => {
    const fixed = (n: number) => new Uint8Array(n).fill(7);
    const first = await t.cluster.bootstrapAdmin(fixed);
    expect(first.created).toBe(true);
    if (!first.created) return;
    expect(first.password).toBe(Buffer.from(fixed(18)).toString('base64url'));
    expect(first.login).toMatchObject({ user: 'admin', roles: ['admin'] });
    expect(first.login.expiresAtMs).toBeGreaterThan(Date.now());
    // The token is a login of its own: a client with a fresh identity (not the admin key) and
    // the token is admin.
    const peer = await t.cluster.createClientPeer();
    try {
      const meta = new MetaClient({ peer, masters: t.cluster.masterAddrs, token: first.login.token });
      expect(await meta.whoami()).toMatchObject({ user: 'admin', roles: ['admin'], via: 'token' });
    } finally {
      await peer.stop();
    }

    expect(await t.cluster.bootstrapAdmin()).toEqual({ created: false });
    const relogin = await t.client((c) => c.login('admin', first.password));
    expect(relogin.user).toBe('admin');
  });

  it('adminToken: a login of admin for dfs commands; an object that does not know the password sets a new one', async () => {
    const whoami = async (token: string) => {
      const peer = await t.cluster.createClientPeer();
      try {
        return await new MetaClient({ peer, masters: t.cluster.masterAddrs, token }).whoami();
      } finally {
        await peer.stop();
      }
    };
    expect(await whoami(await t.cluster.adminToken())).toMatchObject({ user: 'admin', via: 'token' });
    const other = new LocalCluster({ dir: t.dir, masters: 1 });
    await other.init();
    expect(await whoami(await other.adminToken())).toMatchObject({ user: 'admin', via: 'token' });
  });
});
