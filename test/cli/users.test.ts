import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { EXIT, main } from '../../src/cli/index.ts';
import type { CliIO } from '../../src/cli/index.ts';
import { useTempDirs } from '../support/tmp.ts';

/**
 * Users and permissions through the command line, against a real local cluster (one master, no
 * storage nodes: namespace operations are enough to be refused and allowed). Runs `main` in
 * process as a user would type the commands, each with its own environment; the login test runs
 * the real binary to look at the process list while it runs.
 */
const tempDir = useTempDirs();
const BIN = new URL('../../bin/dfs.js', import.meta.url).pathname;
afterEach(() => {
  process.exitCode = 0;
});

interface Ran {
  code: number;
  out: string;
  err: string;
}

/** The CLI with `env` as its whole environment (plus the config dir), as `dfs ...` would run. */
function cli(configDir: string, clusterDir: string) {
  return async (argv: string[], env: Record<string, string> = {}): Promise<Ran> => {
    let out = '';
    let err = '';
    const io: CliIO = {
      stdout: { write: (t: string) => (out += t), isTTY: false },
      stderr: { write: (t: string) => (err += t), isTTY: false },
      stdin: Readable.from([]),
      env: { DFS_CONFIG_DIR: configDir, ...env },
    };
    const code = await main([...argv, ...(argv[0] === 'cluster' ? ['--dir', clusterDir] : ['--cluster', clusterDir])], io);
    return { code, out, err };
  };
}

const NOT_LOGGED_IN = 'dfs: not logged in (or your login expired): run dfs login [ERR_UNAUTHENTICATED]\n';

describe('users and permissions from the command line', () => {
  it('cluster up makes admin and logs in; a new user is denied, then granted, then revoked; logins are files only the user can read', async () => {
    const root = await tempDir();
    const configDir = join(root, 'config');
    const clusterDir = join(root, 'cluster');
    const dfs = cli(configDir, clusterDir);
    const up = await dfs(['cluster', 'up', '--detach', '--json', '--masters', '1', '--nodes', '0']);
    try {
      expect(up.code, up.err).toBe(EXIT.ok);
      const summary = JSON.parse(up.out) as { admin: { user: string; created: boolean; password: string; loggedIn: boolean; tokenFile: string } };
      expect(summary.admin).toMatchObject({ user: 'admin', created: true, loggedIn: true });
      expect(summary.admin.password).toMatch(/^[A-Za-z0-9_-]{24}$/); // 18 random bytes, base64url
      const tokenFile = summary.admin.tokenFile;
      expect(dirname(dirname(tokenFile))).toBe(configDir);
      expect(tokenFile).toMatch(/\/tokens\/[0-9a-f]{16}\.json$/);
      expect((await stat(tokenFile)).mode & 0o777).toBe(0o600);
      expect((await stat(dirname(tokenFile))).mode & 0o777).toBe(0o700);
      expect((await stat(configDir)).mode & 0o777).toBe(0o700);
      const adminToken = (JSON.parse(await readFile(tokenFile, 'utf8')) as { token: string }).token;

      const me = await dfs(['whoami']);
      expect(me.code, me.err).toBe(EXIT.ok);
      expect(me.out).toMatch(/^admin \(roles: admin; logged in until \d{4}-\d\d-\d\d \d\d:\d\d UTC\)\n$/);

      // Users: alice reads only; bob has no role.
      const alicePassword = `alice-${randomBytes(8).toString('hex')}`;
      expect((await dfs(['user', 'add', 'alice', '--role', 'reader'], { DFS_PASSWORD: alicePassword })).out).toBe('added user alice (roles: reader)\n');
      const bobFile = join(root, 'bob.pw');
      await writeFile(bobFile, 'bob-password\n', { mode: 0o600 });
      const bob = await dfs(['user', 'add', 'bob', '--password-file', bobFile]);
      expect(bob.code, bob.err).toBe(EXIT.ok);
      expect(bob.out).toMatch(/^added user bob \(roles: none\); with no role bob may do nothing until granted/);
      const again = await dfs(['user', 'add', 'alice'], { DFS_PASSWORD: 'x' });
      expect(again.code).toBe(EXIT.failure);
      expect(again.err).toMatch(/\[ERR_EXISTS\]\n$/);

      const table = await dfs(['user', 'list']);
      expect(table.code, table.err).toBe(EXIT.ok);
      const lines = table.out.trimEnd().split('\n');
      expect(lines[0]).toMatch(/^USER\s+ROLES\s+STATE\s+USED\s+FILES\s+QUOTA$/);
      expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 3))).toEqual([
        ['admin', 'admin', 'active'],
        ['alice', 'reader', 'active'],
        ['bob', 'none', 'active'],
      ]);
      const listed = JSON.parse((await dfs(['user', 'list', '--json'])).out) as Array<{ name: string; roles: string[]; disabled: boolean }>;
      expect(listed.map((u) => [u.name, u.roles, u.disabled]).sort()).toEqual([
        ['admin', ['admin'], false],
        ['alice', ['reader'], false],
        ['bob', [], false],
      ]);

      expect((await dfs(['mkdir', '/shared'])).code).toBe(EXIT.ok);

      // A wrong password: exit 6, one line, and the saved login (admin's) is untouched.
      const wrong = await dfs(['login', 'alice'], { DFS_PASSWORD: 'not-her-password' });
      expect(wrong.code).toBe(EXIT.unauthenticated);
      expect(wrong.err.split('\n')).toHaveLength(2);
      expect(wrong.err).toMatch(/^dfs: .*\[ERR_UNAUTHENTICATED\]\n$/);
      expect(wrong.err).not.toContain('not-her-password');
      expect((await dfs(['whoami'])).out).toMatch(/^admin /);

      // The real binary, password in DFS_PASSWORD: it is in no process's arguments meanwhile.
      const seen = await loginWatchingPs(['login', 'alice', '--cluster', clusterDir], { DFS_CONFIG_DIR: configDir, DFS_PASSWORD: alicePassword }, alicePassword);
      expect(seen.code, seen.stderr).toBe(0);
      expect(seen.stdout).toMatch(new RegExp(`^logged in as alice \\(roles: reader\\) until .* UTC; token saved in ${tokenFile.replace(/[.]/g, '\\.')}\\n$`));
      expect(seen.psSnapshots).toBeGreaterThan(0);
      expect(seen.leaks).toEqual([]);
      expect((await stat(tokenFile)).mode & 0o777).toBe(0o600);

      expect((await dfs(['whoami'])).out).toMatch(/^alice \(roles: reader; logged in until .*\)\n$/);
      const asAdmin = { DFS_TOKEN: adminToken };
      expect((await dfs(['whoami'], asAdmin)).out).toMatch(/^admin /); // DFS_TOKEN beats the saved login

      // Denied: a reader may read but not write; and may not administer users.
      expect((await dfs(['ls', '/'])).out).toBe('shared/\n');
      const denied = await dfs(['mkdir', '/shared/a']);
      expect(denied.code).toBe(EXIT.forbidden);
      expect(denied.err).toMatch(/^dfs: [^\n]*\[ERR_FORBIDDEN\]\n$/);
      expect((await dfs(['user', 'add', 'eve'], { DFS_PASSWORD: 'eve-password' })).code).toBe(EXIT.forbidden);
      expect((await dfs(['grant', '/shared', 'alice', 'write'])).code).toBe(EXIT.forbidden);

      // Granted.
      const granted = await dfs(['grant', '/shared', 'alice', 'write'], asAdmin);
      expect(granted.code, granted.err).toBe(EXIT.ok);
      expect(granted.out).toBe('granted write on /shared to alice\n');
      const made = await dfs(['mkdir', '/shared/a']);
      expect(made.code, made.err).toBe(EXIT.ok);

      const acl = await dfs(['acl', '/shared/a'], asAdmin);
      expect(acl.code, acl.err).toBe(EXIT.ok);
      const aclLines = acl.out.trimEnd().split('\n');
      expect(aclLines[0]).toBe('/shared/a: owner alice');
      expect(aclLines[1]).toMatch(/^PATH\s+PRINCIPAL\s+LEVEL\s+INHERITED$/);
      expect(aclLines.slice(2).map((l) => l.split(/\s+/))).toEqual([['/shared', 'alice', 'write', 'yes']]);
      const aclJson = JSON.parse((await dfs(['acl', '/shared', '--json'], asAdmin)).out) as { path: string; grants: unknown[] };
      expect(aclJson).toMatchObject({ path: '/shared', grants: [{ path: '/shared', principal: 'alice', level: 'write', inherited: false }] });

      // Revoked: the very next write is refused.
      const revoked = await dfs(['revoke', '/shared', 'alice'], asAdmin);
      expect(revoked.code, revoked.err).toBe(EXIT.ok);
      expect(revoked.out).toBe('revoked every grant on /shared from alice\n');
      expect((await dfs(['mkdir', '/shared/b'])).code).toBe(EXIT.forbidden);
      expect(JSON.parse((await dfs(['acl', '/shared', '--json'], asAdmin)).out)).toMatchObject({ grants: [] });

      // Roles, quota, disable / enable.
      expect((await dfs(['user', 'roles', 'bob', 'writer', 'reader'], asAdmin)).out).toBe('bob has roles: writer,reader\n');
      expect((await dfs(['user', 'quota', 'bob', '--bytes', '10GiB', '--files', '1000'], asAdmin)).out).toBe('bob: quota 10.0 GiB, 1000 files\n');
      const bobView = (JSON.parse((await dfs(['user', 'list', '--json'], asAdmin)).out) as Array<{ name: string; roles: string[]; quota?: object }>).find((u) => u.name === 'bob');
      expect(bobView).toMatchObject({ roles: ['writer', 'reader'], quota: { maxBytes: 10 * 2 ** 30, maxFiles: 1000 } });
      expect((await dfs(['user', 'disable', 'bob'], asAdmin)).code).toBe(EXIT.ok);
      expect((await dfs(['user', 'list'], asAdmin)).out).toMatch(/\nbob\s+writer,reader\s+disabled/);
      const disabledLogin = await dfs(['login', 'bob', '--password-file', bobFile], { DFS_CONFIG_DIR: join(root, 'bob-config') });
      expect([EXIT.unauthenticated, EXIT.forbidden]).toContain(disabledLogin.code);
      expect((await dfs(['user', 'enable', 'bob'], asAdmin)).code).toBe(EXIT.ok);

      // A damaged login file: one clear line, exit 6; logging in again replaces it.
      await writeFile(tokenFile, 'garbage');
      const damaged = await dfs(['ls', '/']);
      expect(damaged.code).toBe(EXIT.unauthenticated);
      expect(damaged.err).toBe(`dfs: your saved login ${tokenFile} is damaged (not JSON): run npx dfs login again, which replaces it [ERR_UNAUTHENTICATED]\n`);
      expect((await dfs(['login', 'alice'], { DFS_PASSWORD: alicePassword })).code).toBe(EXIT.ok);

      // Her own password: the current one first (DFS_OLD_PASSWORD here; a prompt on a terminal).
      const wrongOld = await dfs(['user', 'passwd'], { DFS_OLD_PASSWORD: 'not-it', DFS_PASSWORD: 'whatever-new' });
      expect([EXIT.unauthenticated, EXIT.forbidden]).toContain(wrongOld.code);
      const newPassword = `${alicePassword}-2`;
      const changed = await dfs(['user', 'passwd'], { DFS_OLD_PASSWORD: alicePassword, DFS_PASSWORD: newPassword });
      expect(changed.code, changed.err).toBe(EXIT.ok);
      expect(changed.out).toBe('password of alice changed\n');
      expect((await dfs(['whoami'])).out).toMatch(/^alice /); // logged in again with the new one
      expect((await dfs(['login', 'alice'], { DFS_PASSWORD: alicePassword })).code).toBe(EXIT.unauthenticated);
      expect((await dfs(['login', 'alice'], { DFS_PASSWORD: newPassword })).code).toBe(EXIT.ok);

      // logout --everywhere ends the token itself, not just the file.
      const aliceToken = (JSON.parse(await readFile(tokenFile, 'utf8')) as { token: string }).token;
      const out = await dfs(['logout', '--everywhere']);
      expect(out.code, out.err).toBe(EXIT.ok);
      expect(out.out).toBe(`every login of alice ended, on every machine\nlogged out: deleted ${tokenFile}\n`);
      await expect(stat(tokenFile)).rejects.toThrow(/ENOENT/);
      expect(await dfs(['whoami'], { DFS_TOKEN: aliceToken })).toMatchObject({ code: EXIT.unauthenticated });

      // Logged out: one line saying what to do.
      const anonymous = await dfs(['mkdir', '/x']);
      expect(anonymous.code).toBe(EXIT.unauthenticated);
      expect(anonymous.err).toBe(NOT_LOGGED_IN);
      const badEnv = await dfs(['ls', '/'], { DFS_TOKEN: 'v1.not-a-token' });
      expect(badEnv.code).toBe(EXIT.unauthenticated);
      expect(badEnv.err).toMatch(/^dfs: not logged in \(or your login expired\): run dfs login \(DFS_TOKEN is set/);
      expect((await dfs(['status'])).code).toBe(EXIT.ok); // status needs no login
    } finally {
      await dfs(['cluster', 'down']);
    }

    // The same layout up again: admin exists, so no new password; it says how to log in.
    const again = await dfs(['cluster', 'up', '--detach', '--masters', '1', '--nodes', '0']);
    try {
      expect(again.code, again.err).toBe(EXIT.ok);
      expect(again.out).toContain('user admin exists (its password was shown by the first dfs cluster up of this directory): log in with dfs login admin\n');
      expect(again.out).not.toMatch(/admin password:/);
    } finally {
      await dfs(['cluster', 'down']);
    }
  });
});

/**
 * Runs the dfs binary and, until it exits, snapshots every process's arguments (`ps -eo args`),
 * looking for `secret` in any of them. Resolves with what it printed and the leaks found.
 */
async function loginWatchingPs(args: string[], env: Record<string, string>, secret: string): Promise<{ code: number | null; stdout: string; stderr: string; psSnapshots: number; leaks: string[] }> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit') as Promise<[number | null]>;
  let running = true;
  void exited.then(() => (running = false));
  const leaks: string[] = [];
  let psSnapshots = 0;
  const ps = promisify(execFile);
  do {
    const { stdout: table } = await ps('ps', ['-eo', 'args'], { maxBuffer: 16 * 1024 * 1024 });
    psSnapshots++;
    leaks.push(...table.split('\n').filter((line) => line.includes(secret)));
    const cmdline = await readFile(`/proc/${child.pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(secret)) leaks.push(cmdline);
  } while (running);
  const [code] = await exited;
  return { code, stdout, stderr, psSnapshots, leaks };
}
