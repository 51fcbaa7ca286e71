import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configDirOf } from '../../src/cli/config-dir.ts';
import { clientToken } from '../../src/cli/client-context.ts';
import { deleteLogin, loadLogin, loginPath, type SavedLogin, saveLogin } from '../../src/cli/token-store.ts';
import { clusterKeyOf } from '../../src/cluster/index.ts';
import { isDfsError } from '../../src/errors/index.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();

const M1 = '/ip4/127.0.0.1/tcp/7001/p2p/12D3KooWJ3PS6omZM3H5umKvH7UVCEE7Yv3vxb58xwUasVanuzdo';
const M2 = '/ip4/127.0.0.1/tcp/7002/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo';
const KEY = clusterKeyOf([M1, M2]);

function login(overrides: Partial<SavedLogin> = {}): SavedLogin {
  return { version: 1, cluster: KEY, user: 'alice', roles: ['writer'], token: 'v1.token.sig', expiresAtMs: 2_000_000_000_000, savedAtMs: 1_700_000_000_000, ...overrides };
}

describe('the config directory', () => {
  it('comes from the injected environment only: DFS_CONFIG_DIR, else an absolute XDG_CONFIG_HOME, else HOME; none of them is none at all', () => {
    expect(configDirOf({})).toBeUndefined(); // never the OS account's home: a test with env {} cannot touch it
    expect(configDirOf({ XDG_CONFIG_HOME: 'relative/cfg' })).toBeUndefined();
    expect(configDirOf({ HOME: '/home/a' })).toBe('/home/a/.config/dfs');
    expect(configDirOf({ HOME: '/home/a', XDG_CONFIG_HOME: '/x' })).toBe('/x/dfs');
    expect(configDirOf({ HOME: '/home/a', XDG_CONFIG_HOME: '/x', DFS_CONFIG_DIR: '/d' })).toBe('/d');
  });

  it('is a fresh temp directory in every test process (vitest setupFiles), never the real home', () => {
    const dir = process.env.DFS_CONFIG_DIR;
    expect(dir).toBeDefined();
    expect(dir).not.toContain('.config');
  });
});

describe('the cluster key', () => {
  it('is 16 hex characters of the sorted master peer ids: the same for any order or address, different for other masters', () => {
    expect(KEY).toMatch(/^[0-9a-f]{16}$/);
    expect(clusterKeyOf([M2, M1])).toBe(KEY);
    expect(clusterKeyOf([M1.replace('7001', '9001'), M2.replace('127.0.0.1', '10.0.0.2')])).toBe(KEY);
    expect(clusterKeyOf([M1])).not.toBe(KEY);
  });
});

describe('the token store', () => {
  it('a damaged file is a clear ERR_UNAUTHENTICATED saying to log in again, whatever is wrong with it', async () => {
    const env = { DFS_CONFIG_DIR: await tempDir() };
    const path = loginPath(env, KEY);
    await mkdir(join(env.DFS_CONFIG_DIR, 'tokens'), { recursive: true });
    const bad: Array<[string, string]> = [
      ['not JSON', '{"version":1,'],
      ['empty', ''],
      ['wrong type', JSON.stringify({ ...login(), expiresAtMs: 'soon' })],
      ['missing token', JSON.stringify({ ...login(), token: undefined })],
      ['bad role', JSON.stringify({ ...login(), roles: ['root'] })],
      ['another cluster', JSON.stringify(login({ cluster: 'ffffffffffffffff' }))],
      ['an array', '[]'],
    ];
    for (const [what, text] of bad) {
      await writeFile(path, text);
      const err = await loadLogin(env, KEY).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isDfsError(err, 'ERR_UNAUTHENTICATED'), what).toBe(true);
      expect((err as Error).message, what).toMatch(new RegExp(`your saved login ${path} is damaged \\(.+\\): run npx dfs login again`));
      expect((err as Error).message, what).not.toContain('\n');
    }
  });

  it('refuses a cluster key that is not one (it becomes a file name)', async () => {
    const env = { DFS_CONFIG_DIR: await tempDir() };
    for (const key of ['../../etc/passwd', 'ABCDEF0123456789', '']) {
      expect(() => loginPath(env, key)).toThrow(/not a cluster key/);
    }
  });

  it('nothing saved, or no config directory at all: no login (not an error)', async () => {
    expect(await loadLogin({ DFS_CONFIG_DIR: await tempDir() }, KEY)).toBeUndefined();
    expect(await loadLogin({}, KEY)).toBeUndefined();
  });

  it('saves a login as <config dir>/tokens/<cluster key>.json, file 0600 and directories 0700 (even ones that existed wider), and reads it back', async () => {
    const root = await tempDir();
    const env = { DFS_CONFIG_DIR: join(root, 'cfg') };
    await mkdir(join(root, 'cfg', 'tokens'), { recursive: true, mode: 0o755 });
    await chmod(join(root, 'cfg'), 0o755);
    await chmod(join(root, 'cfg', 'tokens'), 0o777);
    const path = await saveLogin(env, login());
    expect(path).toBe(join(root, 'cfg', 'tokens', `${KEY}.json`));
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(root, 'cfg'))).mode & 0o777).toBe(0o700);
    expect((await stat(join(root, 'cfg', 'tokens'))).mode & 0o777).toBe(0o700);
    expect(await loadLogin(env, KEY)).toEqual({ path, login: login() });

    // Replaced whole, never appended to; the mode stays 0600.
    await saveLogin(env, login({ user: 'bob', token: 'v1.other.sig' }));
    expect(JSON.parse(await readFile(path, 'utf8'))).toMatchObject({ user: 'bob', token: 'v1.other.sig' });
    expect((await stat(path)).mode & 0o777).toBe(0o600);

    expect(await deleteLogin(env, KEY)).toBe(path);
    expect(await deleteLogin(env, KEY)).toBeUndefined();
    expect(await loadLogin(env, KEY)).toBeUndefined();
  });

  it('DFS_TOKEN beats the saved login; an expired saved login sends no token', async () => {
    const dir = await tempDir();
    await saveLogin({ DFS_CONFIG_DIR: dir }, login({ token: 'v1.saved.sig' }));
    const io = (env: Record<string, string>) => ({ stdout: { write: () => true }, stderr: { write: () => true }, stdin: process.stdin, env: { DFS_CONFIG_DIR: dir, ...env } });
    expect(await clientToken(io({}), KEY, 1_800_000_000_000)).toMatchObject({ token: 'v1.saved.sig', source: loginPath({ DFS_CONFIG_DIR: dir }, KEY) });
    expect(await clientToken(io({ DFS_TOKEN: 'v1.env.sig' }), KEY, 1_800_000_000_000)).toEqual({ token: 'v1.env.sig', source: 'DFS_TOKEN' });
    const expired = await clientToken(io({}), KEY, 2_000_000_000_000);
    expect(expired.token).toBeUndefined();
    expect(expired.saved?.user).toBe('alice');
  });
});
