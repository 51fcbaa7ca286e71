import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MetaClient } from '../../src/client/index.ts';
import { isDfsError } from '../../src/errors/index.ts';
import { MemoryLogger } from '../../src/log/index.ts';
import { startMaster } from '../../src/master/index.ts';
import { createPeer } from '../../src/net/index.ts';
import { TEST_PASSWORDS } from '../support/master-fixture.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
const SECRET = 'hunter2-SECRET-xyz';
const SECOND = 'second-SECRET-abc';

async function* filesUnder(dir: string): AsyncGenerator<string> {
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    if ((await stat(path)).isDirectory()) yield* filesUnder(path);
    else yield path;
  }
}

describe('passwords never reach the Raft log, snapshots or logs in clear', () => {
  it('a user added and re-passworded through a real master leaves no clear password in its data dir or log', async () => {
    const dir = await tempDir();
    const logger = new MemoryLogger();
    const client = await createPeer({});
    const master = await startMaster({ name: 'm1', dir, listen: ['/ip4/127.0.0.1/tcp/0'], peers: [], adminPeers: [client.peerId], snapshotEveryEntries: 4, passwords: TEST_PASSWORDS, logger });
    try {
      await master.driver.until(() => master.driver.role === 'leader' && master.service.access.keys() !== undefined, 10_000);
      const admin = new MetaClient({ peer: client, masters: [...master.addrs] });
      await admin.addUser('alice', SECRET, ['writer']);
      const login = await admin.login('alice', SECRET);
      expect(login).toMatchObject({ user: 'alice', roles: ['writer'] });
      const alice = new MetaClient({ peer: client, masters: [...master.addrs], token: () => login.token });
      // (the admin key wins over a token from the same peer: the masters take it for `admin`)
      expect(await alice.whoami()).toMatchObject({ user: 'admin', via: 'admin-key' });
      await admin.setPassword('alice', SECOND);
      const wrong = await admin.login('alice', SECRET).catch((e: unknown) => e);
      expect(isDfsError(wrong, 'ERR_UNAUTHENTICATED')).toBe(true);
      await admin.login('alice', SECOND);
      for (let i = 0; i < 10; i++) await admin.write({ op: 'mkdir', path: `/d${i}`, parents: true });
      await master.driver.until(() => master.driver.status().snapshotIndex > 0, 10_000);
      expect((await admin.listUsers()).map((u) => u.name)).toEqual(['alice']);
    } finally {
      await master.stop();
      await client.stop();
    }
    let scanned = 0;
    for await (const file of filesUnder(dir)) {
      const bytes = await readFile(file);
      scanned++;
      for (const secret of [SECRET, SECOND]) {
        expect(bytes.includes(Buffer.from(secret)), `${secret} in ${file}`).toBe(false);
        expect(bytes.includes(Buffer.from(secret).toString('base64').slice(0, 16)), `base64 of ${secret} in ${file}`).toBe(false);
      }
    }
    expect(scanned).toBeGreaterThan(3);
    expect(JSON.stringify(logger.records)).not.toMatch(/SECRET/);
  });
});
