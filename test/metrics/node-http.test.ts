import { describe, expect, it } from 'vitest';
import { startMaster } from '../../src/master/master.ts';
import { startStorageNode } from '../../src/node/storage-node.ts';
import { useTempDirs } from '../support/tmp.ts';

// A file of its own: libp2p's metrics module keeps its metrics per process (one libp2p per
// process in production), so only the first peer made in a process registers them.
const tempDir = useTempDirs();

describe('a real storage node with --http', () => {
  it('serves its store figures, chunk request counters and libp2p metrics at /metrics', async () => {
    const master = await startMaster({ name: 'm1', dir: await tempDir(), listen: ['/ip4/127.0.0.1/tcp/0'], peers: [], admitNodes: 'auto' });
    try {
      await master.driver.until(() => master.driver.role === 'leader', 10_000);
      const node = await startStorageNode({ name: 'n1', dir: await tempDir(), listen: ['/ip4/127.0.0.1/tcp/0'], masters: [...master.addrs], http: '127.0.0.1:0' });
      try {
        // libp2p registers its connection metrics as connections open: wait for the first.
        let metrics = '';
        for (const deadline = Date.now() + 10_000; Date.now() < deadline && !/^libp2p_/m.test(metrics); await new Promise((r) => setTimeout(r, 100))) {
          metrics = await (await fetch(`http://${node.httpAddress!}/metrics`)).text();
        }
        expect(metrics).toMatch(/^dfs_store_free_bytes\{role="node",process_name="n1"\} \d+/m);
        expect(metrics).toMatch(/^dfs_store_chunks\{[^}]*\} 0$/m);
        expect(metrics).toMatch(/^# TYPE dfs_chunk_request_seconds histogram$/m);
        expect(metrics).toMatch(/^libp2p_\w+/m);
      } finally {
        await node.stop();
      }
    } finally {
      await master.stop();
    }
  });
});
