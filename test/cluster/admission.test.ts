import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadBlake3 } from '../../src/chunker/index.ts';
import { MetaClient, putFile } from '../../src/client/index.ts';
import { LocalCluster } from '../../src/cluster/index.ts';
import type { NodeView } from '../../src/meta/index.ts';

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/**
 * Admission on real processes (issue 12): with `--admit-nodes manual`, a storage node that
 * registers stays pending — it gets no data and is no placement target — until an admin admits it.
 */
describe('storage node admission, real processes', () => {
  it('a registering node stays pending and gets no data until `dfs node admit`; then it does', { timeout: 120_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dfs-admission-'));
    const cluster = new LocalCluster({ dir, masters: 1, nodes: 3, admitNodes: 'manual' });
    try {
      await cluster.start();
      const views = async (): Promise<NodeView[]> => (await cluster.withClient((c) => c.leaderRequest({ type: 'nodes' }))) as NodeView[];
      const until = async (what: string, check: (v: NodeView[]) => boolean): Promise<NodeView[]> => {
        for (const deadline = Date.now() + 30_000; ; await new Promise((r) => setTimeout(r, 100))) {
          const v = await views();
          if (check(v)) return v;
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v.map((n) => [n.name, n.state]))}`);
        }
      };
      const pending = await until('3 registered nodes', (v) => v.length === 3);
      expect(pending.map((n) => n.state)).toEqual(['pending', 'pending', 'pending']);

      // A writer's put finds no node to place on: nothing is stored anywhere.
      const token = await cluster.adminToken();
      const peer = await cluster.createClientPeer();
      const blake3 = await loadBlake3();
      try {
        const meta = new MetaClient({ peer, masters: cluster.masterAddrs, token, timeoutMs: 5_000 });
        const data = randomBytes(512 * 1024);
        await expect(putFile(once(data), '/refused.bin', { peer, meta, blake3 })).rejects.toMatchObject({ code: expect.stringMatching(/ERR_UNDER_REPLICATED|ERR_TIMEOUT|ERR_NO_QUORUM/) });
        expect((await views()).every((n) => n.chunks === 0)).toBe(true);

        // Admitted by the admin (dfs node admit), the nodes take data.
        for (const n of pending) await cluster.withClient((c) => c.write({ op: 'admitNode', nodeId: n.id }));
        await until('3 alive nodes', (v) => v.every((n) => n.state === 'alive'));
        await putFile(once(data), '/stored.bin', { peer, meta, blake3 });
        expect((await meta.stat('/stored.bin')).kind).toBe('file');
        meta.close();
      } finally {
        await peer.stop();
      }
    } finally {
      await cluster.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
