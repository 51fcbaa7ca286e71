import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isDfsError } from '../../src/errors/index.ts';
import { BOOTSTRAP_MARKER, markMasterNew, startMaster } from '../../src/master/index.ts';
import { loadOrCreateIdentity } from '../../src/net/index.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
const solo = (dir: string) => ({ name: 'solo', dir, listen: ['/ip4/127.0.0.1/tcp/0'], peers: [] });

describe('a master that lost its Raft state (issue 11, bug 5)', () => {
  it('refuses to start as a voter, saying how to re-add it', async () => {
    const dir = await tempDir();
    const first = await startMaster(solo(dir));
    await first.driver.until(() => first.driver.role === 'leader', 5_000);
    await first.stop();
    expect(await readdir(dir)).not.toContain(BOOTSTRAP_MARKER);
    await rm(join(dir, 'raft'), { recursive: true, force: true });
    const err = await startMaster(solo(dir)).then(
      (m) => m.stop().then(() => 'started'),
      (e: unknown) => e,
    );
    expect(isDfsError(err, 'ERR_RAFT_STATE_MISSING')).toBe(true);
    expect((err as Error).message).toMatch(/vote twice/);
    expect((err as Error).message).toMatch(/add it back as a new member/);
  });

  it('a master initialised but never started (or killed before its first write) bootstraps', async () => {
    const dir = await tempDir();
    await markMasterNew(dir);
    await loadOrCreateIdentity(dir); // what `dfs master init` leaves behind
    const m = await startMaster(solo(dir));
    await m.driver.until(() => m.driver.role === 'leader', 5_000);
    expect(await readdir(dir)).not.toContain(BOOTSTRAP_MARKER);
    await m.stop();
    // It restarts from its own state.
    const again = await startMaster(solo(dir));
    await again.driver.until(() => again.driver.role === 'leader', 5_000);
    await again.stop();
  });
});
