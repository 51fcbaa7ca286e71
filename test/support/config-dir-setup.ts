import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

/**
 * Runs before every test file (vitest `setupFiles`): gives the test process its own, empty dfs
 * config directory, so no test — nor a `dfs` child it spawns, which inherits the environment —
 * reads or writes logins in the real ~/.config/dfs. `test.env` in the config cannot do this: it
 * is one value for every process. A directory someone set on purpose (DFS_CONFIG_DIR exported
 * before `npm test`) is kept; one this file made for an earlier test file of the same worker is
 * replaced, so each file starts logged out.
 */
const MADE = 'DFS_TEST_CONFIG_DIR_MADE';
const inherited = process.env.DFS_CONFIG_DIR;
if (!inherited || inherited === process.env[MADE]) {
  const dir = mkdtempSync(join(tmpdir(), 'dfs-config-'));
  process.env.DFS_CONFIG_DIR = dir;
  process.env[MADE] = dir;
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });
}
