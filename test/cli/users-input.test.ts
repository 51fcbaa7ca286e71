import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { EXIT, main } from '../../src/cli/index.ts';
import { readPassword } from '../../src/cli/password-input.ts';
import { loginPath } from '../../src/cli/token-store.ts';
import { clusterKeyOf } from '../../src/cluster/index.ts';
import { isDfsError } from '../../src/errors/index.ts';
import { captureIO } from '../support/cli-io.ts';
import { useTempDirs } from '../support/tmp.ts';

/**
 * The CLI half of logins that needs no cluster: where a password may come from (never argv), the
 * terminal prompt, and what a damaged saved login does. See users.test.ts for the rest, against a
 * real cluster.
 */
const tempDir = useTempDirs();
afterEach(() => {
  process.exitCode = 0;
});

const SECRET = 'hunter2-do-not-print';
/** A master nobody listens on: commands here must fail before they would dial it. */
const DEAD_MASTER = '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWJ3PS6omZM3H5umKvH7UVCEE7Yv3vxb58xwUasVanuzdo';

/** A cluster directory whose client config names a master that is not there. */
async function deadCluster(): Promise<{ dir: string; config: string }> {
  const dir = await tempDir();
  await writeFile(join(dir, 'dfs-client.json'), JSON.stringify({ masters: [DEAD_MASTER], insecure: true }));
  return { dir, config: join(await tempDir(), 'cfg') };
}

/** A stdin that says it is a terminal, recording raw mode; `type` feeds it keystrokes. */
function fakeTerminal(): { stdin: NodeJS.ReadableStream; raw: boolean[]; type: (text: string) => void } {
  const stream = new PassThrough();
  const raw: boolean[] = [];
  Object.assign(stream, { isTTY: true, setRawMode: (on: boolean) => raw.push(on) });
  return { stdin: stream, raw, type: (text) => stream.write(text) };
}

describe('passwords never come from the command line', () => {
  it('there is no --password flag: login, user add and user passwd refuse it as a usage error (exit 2), never echoing the value', async () => {
    const argvs = [
      ['login', 'alice', '--password', SECRET],
      ['login', `--password=${SECRET}`],
      ['user', 'add', 'bob', '--password', SECRET],
      ['user', 'passwd', `--password=${SECRET}`],
      ['logout', '--password', SECRET],
    ];
    for (const argv of argvs) {
      const io = captureIO();
      expect(await main(argv, io), argv.join(' ')).toBe(EXIT.usage);
      expect(io.err(), argv.join(' ')).toMatch(/^dfs: Unknown option `--password`.*\[ERR_USAGE\]\n$/);
      expect(io.err() + io.out()).not.toContain(SECRET);
    }
    const help = captureIO();
    expect(await main(['login', '--help'], help)).toBe(EXIT.ok);
    expect(help.out()).toContain('--password-file');
    expect(help.out()).not.toMatch(/--password\s/);
  });

  it('a password given as an argument is refused (exit 2) without being repeated', async () => {
    const { dir, config } = await deadCluster();
    for (const argv of [
      ['login', 'alice', SECRET],
      ['user', 'add', 'bob', SECRET],
      ['user', 'passwd', 'bob', SECRET],
    ]) {
      const io = captureIO({ DFS_CONFIG_DIR: config });
      expect(await main([...argv, '--cluster', dir], io), argv.join(' ')).toBe(EXIT.usage);
      expect(io.err().split('\n')).toHaveLength(2); // one line
      expect(io.err()).toMatch(/too many arguments.*never goes on the command line/);
      expect(io.err()).not.toContain(SECRET);
    }
  });

  it('login with no password source and no terminal says where a password may come from (exit 2), before dialing anything', async () => {
    const { dir, config } = await deadCluster();
    const io = captureIO({ DFS_CONFIG_DIR: config });
    const started = performance.now();
    expect(await main(['login', 'alice', '--cluster', dir], io)).toBe(EXIT.usage);
    expect(io.err()).toBe('dfs: no password given and stdin is not a terminal: use --password-file FILE or DFS_PASSWORD (never the command line) [ERR_USAGE]\n');
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('an empty or missing password file is refused', async () => {
    const { dir, config } = await deadCluster();
    const empty = join(dir, 'empty');
    await writeFile(empty, '\n');
    const a = captureIO({ DFS_CONFIG_DIR: config });
    expect(await main(['login', 'alice', '--password-file', empty, '--cluster', dir], a)).toBe(EXIT.usage);
    expect(a.err()).toMatch(/password from --password-file .*empty is empty/);
    const b = captureIO({ DFS_CONFIG_DIR: config });
    expect(await main(['login', 'alice', '--password-file', join(dir, 'nope'), '--cluster', dir], b)).toBe(EXIT.notFound);
  });
});

describe('reading a password', () => {
  it('a file: its one trailing line end is not part of the password; DFS_PASSWORD next; the file wins over the environment', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'pw'), 'correct horse\r\n');
    const io = captureIO({ DFS_PASSWORD: 'from-env' });
    expect(await readPassword(io, { file: join(dir, 'pw'), envName: 'DFS_PASSWORD', prompt: 'p: ' })).toBe('correct horse');
    expect(await readPassword(io, { envName: 'DFS_PASSWORD', prompt: 'p: ' })).toBe('from-env');
  });

  it('on a terminal: raw mode (echo off) while typing, restored after; backspace works; nothing typed is written anywhere', async () => {
    const term = fakeTerminal();
    const io = captureIO({}, term.stdin);
    const read = readPassword(io, { envName: 'DFS_PASSWORD', prompt: 'password for alice: ' });
    term.type('s3cX\u007fret\r');
    expect(await read).toBe('s3cret');
    expect(term.raw).toEqual([true, false]);
    expect(io.err()).toBe('password for alice: \n');
    expect(io.out()).toBe('');
  });

  it('a new password is asked twice on a terminal; a mismatch changes nothing; Ctrl-C cancels', async () => {
    const term = fakeTerminal();
    const io = captureIO({}, term.stdin);
    const mismatch = readPassword(io, { envName: 'DFS_PASSWORD', prompt: 'new password: ', confirm: true }).catch((e: unknown) => e);
    term.type('first\r');
    await new Promise((r) => setImmediate(r));
    term.type('second\r');
    const err = await mismatch;
    expect(isDfsError(err, 'ERR_USAGE') && err.message).toBe('the two passwords differ; nothing changed');
    expect(term.raw).toEqual([true, false, true, false]);

    const cancelled = readPassword(io, { envName: 'DFS_PASSWORD', prompt: 'p: ' }).catch((e: unknown) => e);
    term.type('abc\u0003');
    expect(isDfsError(await cancelled, 'ERR_ABORTED')).toBe(true);
    expect(term.raw.at(-1)).toBe(false);
  });
});

describe('a damaged saved login', () => {
  it('any command says to log in again: one line, exit 6 (not a crash, not 70), before dialing the cluster', async () => {
    const { dir, config } = await deadCluster();
    const path = loginPath({ DFS_CONFIG_DIR: config }, clusterKeyOf([DEAD_MASTER]));
    await mkdir(join(config, 'tokens'), { recursive: true });
    await writeFile(path, '{"version":1,"cluster":');
    for (const argv of [['ls', '/'], ['whoami'], ['user', 'list'], ['grant', '/x', 'alice', 'read']]) {
      const io = captureIO({ DFS_CONFIG_DIR: config });
      expect(await main([...argv, '--cluster', dir], io), argv.join(' ')).toBe(EXIT.unauthenticated);
      expect(io.err()).toBe(`dfs: your saved login ${path} is damaged (not JSON): run npx dfs login again, which replaces it [ERR_UNAUTHENTICATED]\n`);
    }
    // logout still works, and is how to get rid of it without logging in.
    const io = captureIO({ DFS_CONFIG_DIR: config });
    expect(await main(['logout', '--cluster', dir], io)).toBe(EXIT.ok);
    expect(io.out()).toBe(`logged out: deleted ${path}\n`);
  });

  it('bad arguments are refused before anything is read or dialed: roles, levels, principals, user names, quotas', async () => {
    const { dir, config } = await deadCluster();
    const cases: Array<[string[], RegExp]> = [
      [['user', 'add', 'bob', '--role', 'root'], /"root" is not a role: admin, writer, reader/],
      [['user', 'add', '-bob'], /Unknown option|not a user name/],
      [['user', 'add', '.bob'], /".bob" is not a user name/],
      [['user', 'roles', 'bob'], /needs the roles/],
      [['user', 'frob'], /dfs user takes add, rm, passwd, disable, enable, list, roles, quota, not "frob"/],
      [['grant', '/x', 'alice', 'own'], /"own" is not a level: read, write, admin/],
      [['grant', '/x', '@root', 'read'], /"@root" is neither a user name nor @role/],
      [['revoke', '/x', 'alice', 'everything'], /"everything" is not a level/],
      [['user', 'quota', 'bob', '--bytes', 'lots'], /--bytes takes a size such as 10GiB, or none; not "lots"/],
      [['user', 'quota', 'bob', '--files', '1.5'], /--files takes a whole number/],
    ];
    for (const [argv, message] of cases) {
      const io = captureIO({ DFS_CONFIG_DIR: config });
      expect(await main([...argv, '--cluster', dir], io), argv.join(' ')).toBe(EXIT.usage);
      expect(io.err(), argv.join(' ')).toMatch(message);
    }
  });
});
