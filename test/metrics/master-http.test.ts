import { describe, expect, it } from 'vitest';
import { startMaster } from '../../src/master/master.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();

describe('a real master with --http', () => {
  it('serves its Raft figures at /metrics and its status at /status.json and /; a taken port fails the start and leaves nothing running', async () => {
    const master = await startMaster({ name: 'm1', dir: await tempDir(), listen: ['/ip4/127.0.0.1/tcp/0'], peers: [], http: '127.0.0.1:0' });
    try {
      await master.driver.until(() => master.driver.role === 'leader', 10_000);
      const base = `http://${master.httpAddress!}`;
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toMatch(/^dfs_raft_is_leader\{role="master",process_name="m1"\} 1$/m);
      expect(metrics).toMatch(/^dfs_chunks_referenced\{[^}]*\} 0$/m);
      // libp2p's own metrics, in the same registry (connections, streams, protocols).
      expect(metrics).toMatch(/^libp2p_\w+/m);
      const status = (await (await fetch(`${base}/status.json`)).json()) as { master: { name: string; role: string }; nodes: unknown[] | null };
      expect(status.master).toMatchObject({ name: 'm1', role: 'leader' });
      expect(status.nodes).toEqual([]);
      expect(await (await fetch(`${base}/`)).text()).toMatch(/<table id="nodes">/);

      const dir = await tempDir();
      await expect(startMaster({ name: 'm9', dir, listen: ['/ip4/127.0.0.1/tcp/0'], peers: [], http: master.httpAddress! })).rejects.toMatchObject({ code: 'ERR_USAGE' });
    } finally {
      await master.stop();
    }
  });
});

