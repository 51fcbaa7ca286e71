import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MetaClient, putFile } from '../../src/client/index.ts';
import { loadBlake3 } from '../../src/chunker/index.ts';
import type { DfsPeer } from '../../src/net/index.ts';
import { startTestCluster, type TestCluster } from '../support/cluster.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';

/** Storage nodes offering 100 KiB each: smaller than any chunk but a file's last. */
let t: TestCluster;
let peer: DfsPeer;
let meta: MetaClient;

beforeAll(async () => {
  t = await startTestCluster({ nodes: 3, nodeArgs: ['--capacity', '100KiB'] });
  // The cluster's admin key: the masters take this peer for user admin (no login needed).
  peer = await t.cluster.createAdminPeer();
  meta = new MetaClient({ peer, masters: t.cluster.masterAddrs });
}, 120_000);

afterAll(async () => {
  await peer?.stop();
  await t?.stop();
});

describe('placement when the nodes are full', () => {
  it('a put fails with ERR_NO_SPACE saying how many nodes have room, and commits nothing', async () => {
    const data = new SeededBytes(testSeed('placement full')).bytes(1024 * 1024);
    const source = (async function* () {
      yield data;
    })();
    const put = putFile(source, '/full/file', { peer, meta, blake3: await loadBlake3() });
    await expect(put).rejects.toMatchObject({ code: 'ERR_NO_SPACE', message: expect.stringMatching(/^only 0 of 3 storage node\(s\) have room for a \d+-byte chunk, 3 replicas are needed/) });
    await expect(meta.stat('/full/file')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  });
});
