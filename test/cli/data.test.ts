import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, watch, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EXIT, main } from '../../src/cli/index.ts';
import type { CliIO } from '../../src/cli/index.ts';
import { LocalCluster } from '../../src/cluster/index.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';
import { useTempDirs } from '../support/tmp.ts';

/**
 * The data commands as a user types them (put, get, cat, rm, mv, du, df), through main(argv)
 * against a real local cluster: cp-like targets, no overwrite without -f, several sources, -r,
 * --json (errors too) and --quiet; and, as the real binary, Ctrl-C in the middle of a get and a
 * reader that closes the pipe early.
 */
const BIN = new URL('../../bin/dfs.js', import.meta.url).pathname;
const tempDir = useTempDirs();

let dir: string;
let cluster: LocalCluster;
/** What a client needs besides --cluster: a login token once the cluster has users. */
let env: Record<string, string> = {};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfs-cli-data-'));
  cluster = new LocalCluster({ dir, masters: 1, nodes: 3 });
  await cluster.start();
  // Clusters with users need a login for writes; without that feature this is a no-op.
  const bootstrap = (cluster as Partial<{ bootstrapAdmin: () => Promise<{ created: boolean; login?: { token: string } }> }>).bootstrapAdmin;
  // (Users are being added to dfs as this is written: a cluster that cannot make one yet runs open.)
  const made = await bootstrap?.call(cluster).catch(() => undefined);
  if (made?.created && made.login) env = { DFS_TOKEN: made.login.token };
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

afterEach(() => {
  process.exitCode = 0;
});

interface Run {
  code: number;
  out: string;
  err: string;
}

/** dfs ARGS in-process, against the test cluster. */
async function dfs(...args: string[]): Promise<Run> {
  return dfsWith({}, ...args);
}

async function dfsWith(extra: { stdin?: Uint8Array; env?: Record<string, string>; tty?: boolean }, ...args: string[]): Promise<Run> {
  let out = '';
  let err = '';
  const io: CliIO = {
    stdout: { write: (t: string | Uint8Array) => (out += typeof t === 'string' ? t : Buffer.from(t).toString('latin1')), isTTY: false },
    stderr: { write: (t: string) => (err += t), isTTY: extra.tty === true, columns: 70 },
    stdin: Readable.from([Buffer.from(extra.stdin ?? new Uint8Array(0))]),
    env: { ...env, ...extra.env },
  };
  const code = await main([...args, '--cluster', dir], io);
  return { code, out, err };
}

let unique = 0;
/** A fresh remote directory for one test. */
function remoteDir(name: string): string {
  unique += 1;
  return `/${name}-${unique}`;
}

async function localFiles(root: string, names: Record<string, string>): Promise<void> {
  for (const [name, text] of Object.entries(names)) {
    await mkdir(join(root, name, '..'), { recursive: true });
    await writeFile(join(root, name), text);
  }
}

describe('dfs put', () => {
  it('refuses to replace a file without -f (ERR_EXISTS, exit 1, a hint), replaces it with -f', async () => {
    const local = await tempDir();
    const d = remoteDir('put-force');
    await localFiles(local, { 'a.txt': 'first', 'b.txt': 'second' });
    expect((await dfs('put', join(local, 'a.txt'), `${d}/`)).code).toBe(EXIT.ok);
    const again = await dfs('put', join(local, 'b.txt'), `${d}/a.txt`);
    expect(again.code).toBe(EXIT.failure);
    expect(again.err).toBe(`dfs: ${d}/a.txt already exists: use dfs put -f to replace it [ERR_EXISTS]\n`);
    expect((await dfs('cat', `${d}/a.txt`)).out).toBe('first');
    expect((await dfs('put', '-f', join(local, 'b.txt'), `${d}/a.txt`)).code).toBe(EXIT.ok);
    expect((await dfs('cat', `${d}/a.txt`)).out).toBe('second');
  });

  it('puts into a directory with or without the trailing /, and several sources at once', async () => {
    const local = await tempDir();
    const d = remoteDir('put-dir');
    await localFiles(local, { 'f1': 'one', 'f2': 'two', 'f3': 'three' });
    expect((await dfs('mkdir', d)).code).toBe(EXIT.ok);
    expect((await dfs('put', join(local, 'f1'), d)).code).toBe(EXIT.ok); // no slash: d is a directory
    expect((await dfs('put', join(local, 'f2'), join(local, 'f3'), `${d}/`)).code).toBe(EXIT.ok);
    expect((await dfs('ls', d)).out).toBe('f1\nf2\nf3\n');
    // Several sources need a directory.
    const notDir = await dfs('put', join(local, 'f1'), join(local, 'f2'), `${d}/f1`);
    expect(notDir.code).toBe(EXIT.failure);
    expect(notDir.err).toMatch(/is not a directory: put with several sources needs a directory .*\[ERR_NOT_DIR\]\n$/);
    const missing = await dfs('put', join(local, 'f1'), join(local, 'f2'), `${d}/nope`);
    expect(missing.code).toBe(EXIT.notFound);
  });

  it('a local directory needs -r; put -r stores the tree, empty directories too', async () => {
    const local = await tempDir();
    const d = remoteDir('put-tree');
    await localFiles(local, { 'album/a.jpg': 'A', 'album/sub/b.jpg': 'BB', 'album/sub/deeper/c.jpg': 'CCC' });
    await mkdir(join(local, 'album', 'empty'));
    const noR = await dfs('put', join(local, 'album'), `${d}/`);
    expect(noR.code).toBe(EXIT.failure);
    expect(noR.err).toMatch(/album is a directory: use dfs put -r to store it and everything in it \[ERR_IS_DIR\]/);
    expect((await dfs('put', '-r', join(local, 'album'), `${d}/`)).code).toBe(EXIT.ok);
    expect((await dfs('ls', `${d}/album`)).out).toBe('a.jpg\nempty/\nsub/\n');
    expect((await dfs('cat', `${d}/album/sub/deeper/c.jpg`)).out).toBe('CCC');
    // Into a name that does not exist yet: that name is the copy (as cp -r).
    expect((await dfs('put', '-r', join(local, 'album'), `${d}/copy`)).code).toBe(EXIT.ok);
    expect((await dfs('ls', `${d}/copy/sub`)).out).toBe('b.jpg\ndeeper/\n');
    // Into an existing directory: under its own name (${d}/copy/album).
    expect((await dfs('put', '-r', join(local, 'album'), `${d}/copy`)).code).toBe(EXIT.ok);
    expect((await dfs('cat', `${d}/copy/album/a.jpg`)).out).toBe('A');
    // Again, without -f: the directories merge, but the files are there already.
    const again = await dfs('put', '-r', join(local, 'album'), `${d}/`);
    expect(again.code).toBe(EXIT.failure);
    expect(again.err).toMatch(/already exists: use dfs put -f/);
  });

  it('--quiet and --json: no informational line; a JSON line per file on stdout', async () => {
    const local = await tempDir();
    const d = remoteDir('put-json');
    await localFiles(local, { 'x': 'xx', 'y': 'yyy' });
    const loud = await dfs('put', join(local, 'x'), `${d}/`);
    expect(loud.out).toBe('');
    expect(loud.err).toMatch(new RegExp(`^stored ${d}/x: 2 B in 1 chunks`));
    const quiet = await dfs('put', '-q', join(local, 'y'), `${d}/`);
    expect(quiet).toEqual({ code: 0, out: '', err: '' });
    const json = await dfs('put', '-f', '--json', join(local, 'x'), join(local, 'y'), `${d}/`);
    expect(json.err).toBe('');
    const lines = json.out.trim().split('\n').map((l) => JSON.parse(l) as { path: string; size: number });
    expect(lines.map((l) => [l.path, l.size])).toEqual([[`${d}/x`, 2], [`${d}/y`, 3]]);
  });

  it('progress is drawn only on a terminal, clipped to its width, and not with --quiet', async () => {
    const local = await tempDir();
    const d = remoteDir('put-progress-with-a-rather-long-directory-name-to-overflow-the-line');
    await writeFile(join(local, 'p.bin'), new SeededBytes(testSeed('cli-progress')).bytes(3_000_000));
    const shown = await dfsWith({ tty: true }, 'put', join(local, 'p.bin'), `${d}/`);
    expect(shown.code).toBe(EXIT.ok);
    const drawn = shown.err.split('\n')[0]!.split('\r').filter((l) => l !== '');
    expect(drawn.length).toBeGreaterThan(0);
    for (const line of drawn) expect(line.replace('\x1b[K', '').length).toBeLessThanOrEqual(69);
    const quiet = await dfsWith({ tty: true }, 'put', '-q', '-f', join(local, 'p.bin'), `${d}/`);
    expect(quiet.err).toBe('');
  });
});

describe('dfs get and cat', () => {
  it('refuses to replace a local file without -f; into a directory with or without /; several sources', async () => {
    const local = await tempDir();
    const d = remoteDir('get');
    await localFiles(local, { 'src/a': 'AAA', 'src/b': 'BBBB' });
    expect((await dfs('put', join(local, 'src/a'), join(local, 'src/b'), `${d}/`)).code).toBe(EXIT.ok);
    const out = join(local, 'out');
    await mkdir(out);
    expect((await dfs('get', `${d}/a`, out)).code).toBe(EXIT.ok); // a directory, no slash
    expect(await readFile(join(out, 'a'), 'utf8')).toBe('AAA');
    await writeFile(join(out, 'b'), 'mine');
    const refused = await dfs('get', `${d}/b`, `${out}/`);
    expect(refused.code).toBe(EXIT.failure);
    expect(refused.err).toBe(`dfs: ${join(out, 'b')} already exists: use dfs get -f to replace it [ERR_EXISTS]\n`);
    expect(await readFile(join(out, 'b'), 'utf8')).toBe('mine');
    expect((await dfs('get', '-f', `${d}/a`, `${d}/b`, `${out}/`)).code).toBe(EXIT.ok);
    expect(await readFile(join(out, 'b'), 'utf8')).toBe('BBBB');
    expect((await readdir(out)).sort()).toEqual(['a', 'b']); // no partial file left
    const notDir = await dfs('get', `${d}/a`, `${d}/b`, join(out, 'a'));
    expect(notDir.code).toBe(EXIT.failure);
    expect(notDir.err).toMatch(/\[ERR_NOT_DIR\]/);
    const noSuchDir = await dfs('get', `${d}/a`, join(local, 'nowhere') + '/');
    expect(noSuchDir.code).toBe(EXIT.notFound);
  });

  it('a remote directory needs -r; get -r fetches the tree', async () => {
    const local = await tempDir();
    const d = remoteDir('get-tree');
    await localFiles(local, { 'tree/one': '1', 'tree/sub/two': '22' });
    await mkdir(join(local, 'tree', 'empty'));
    expect((await dfs('put', '-r', join(local, 'tree'), `${d}/`)).code).toBe(EXIT.ok);
    const noR = await dfs('get', `${d}/tree`, join(local, 'back'));
    expect(noR.code).toBe(EXIT.failure);
    expect(noR.err).toMatch(/is a directory: use dfs get -r .*\[ERR_IS_DIR\]/);
    expect((await dfs('get', '-r', `${d}/tree`, join(local, 'back'))).code).toBe(EXIT.ok);
    expect(await readFile(join(local, 'back', 'sub', 'two'), 'utf8')).toBe('22');
    expect((await readdir(join(local, 'back'))).sort()).toEqual(['empty', 'one', 'sub']);
    // Into an existing directory: it goes in under its own name.
    expect((await dfs('get', '-r', `${d}/tree`, join(local, 'back'))).code).toBe(EXIT.ok);
    expect(await readFile(join(local, 'back', 'tree', 'one'), 'utf8')).toBe('1');
  });

  it('cat writes files one after the other; a directory or a missing file is an error', async () => {
    const local = await tempDir();
    const d = remoteDir('cat');
    await localFiles(local, { 'h': 'hello ', 'w': 'world' });
    await dfs('put', join(local, 'h'), join(local, 'w'), `${d}/`);
    const both = await dfs('cat', `${d}/h`, `${d}/w`);
    expect(both).toEqual({ code: 0, out: 'hello world', err: '' });
    expect((await dfs('get', `${d}/h`, '-')).out).toBe('hello ');
    const isDir = await dfs('cat', d);
    expect(isDir.code).toBe(EXIT.failure);
    expect(isDir.err).toMatch(/\[ERR_IS_DIR\]/);
    expect((await dfs('cat', `${d}/nope`)).code).toBe(EXIT.notFound);
  });
});

describe('dfs rm and mv', () => {
  it('rm takes several paths; -f ignores missing ones; -r (and -rf) for directories', async () => {
    const local = await tempDir();
    const d = remoteDir('rm');
    await localFiles(local, { 'a': 'a', 'b': 'b', 't/c': 'c' });
    await dfs('put', '-r', join(local, 'a'), join(local, 'b'), join(local, 't'), `${d}/`);
    expect((await dfs('rm', `${d}/a`, `${d}/b`)).code).toBe(EXIT.ok);
    const missing = await dfs('rm', `${d}/a`);
    expect(missing.code).toBe(EXIT.notFound);
    expect((await dfs('rm', '-f', `${d}/a`)).code).toBe(EXIT.ok);
    const notEmpty = await dfs('rm', `${d}/t`);
    expect(notEmpty.code).toBe(EXIT.failure);
    expect(notEmpty.err).toBe(`dfs: ${d}/t is a directory and not empty: use dfs rm -r to remove it and everything in it [ERR_NOT_EMPTY]\n`);
    const removed = await dfs('rm', '-rf', `${d}/t`, `${d}/never`, '--json');
    expect(removed.code).toBe(EXIT.ok);
    expect(JSON.parse(removed.out)).toEqual({ ok: true, removed: 2 });
    expect((await dfs('ls', d)).out).toBe('');
  });

  it('mv into a directory keeps the name; never over a file without -f', async () => {
    const local = await tempDir();
    const d = remoteDir('mv');
    await localFiles(local, { 'x': 'X', 'y': 'Y', 'z': 'Z' });
    await dfs('put', join(local, 'x'), join(local, 'y'), join(local, 'z'), `${d}/`);
    await dfs('mkdir', `${d}/docs`);
    expect((await dfs('mv', `${d}/x`, `${d}/docs`)).code).toBe(EXIT.ok);
    expect((await dfs('ls', `${d}/docs`)).out).toBe('x\n');
    const refused = await dfs('mv', `${d}/y`, `${d}/docs/x`);
    expect(refused.code).toBe(EXIT.failure);
    expect(refused.err).toBe(`dfs: ${d}/docs/x already exists: use dfs mv -f to replace it [ERR_EXISTS]\n`);
    const into = await dfs('mv', '-f', '--json', `${d}/y`, `${d}/docs/x`);
    expect(JSON.parse(into.out)).toEqual({ ok: true, moved: [{ from: `${d}/y`, to: `${d}/docs/x` }] });
    expect((await dfs('cat', `${d}/docs/x`)).out).toBe('Y');
    await dfs('put', join(local, 'x'), `${d}/`);
    expect((await dfs('mv', `${d}/x`, `${d}/z`, `${d}/docs/`, '-f')).code).toBe(EXIT.ok);
    expect((await dfs('ls', `${d}/docs`)).out).toBe('x\nz\n');
  });
});

describe('dfs du and df', () => {
  it('du counts bytes and files under a path; -s only the total; --json exact', async () => {
    const local = await tempDir();
    const d = remoteDir('du');
    await localFiles(local, { 't/a': '12345', 't/s/b': '1234567890', 't/s/c': '1' });
    await dfs('put', '-r', join(local, 't'), `${d}/`);
    const summary = await dfs('du', '-s', '--json', d);
    expect(JSON.parse(summary.out)).toEqual({ path: d, bytes: 16, files: 3, dirs: 2 });
    const text = await dfs('du', '-b', d);
    expect(text.out.trim().split('\n').map((l) => l.trim().split(/\s+/))).toEqual([
      ['SIZE', 'FILES', 'PATH'],
      ['11', '2', `${d}/t/s`],
      ['16', '3', `${d}/t`],
      ['16', '3', d],
    ]);
    expect((await dfs('du', '-s', d)).out).toMatch(/16 B\s+3\s+\//);
  });

  it('df sums the storage nodes and reports chunk health', async () => {
    const r = await dfs('df', '--json');
    expect(r.code, r.err).toBe(EXIT.ok);
    const df = JSON.parse(r.out) as { nodes: number; capacityBytes: number; usedBytes: number; freeBytes: number; chunks: { total: number } | null };
    expect(df.nodes).toBe(3);
    expect(df.capacityBytes).toBeGreaterThan(0);
    expect(df.usedBytes).toBeGreaterThanOrEqual(0);
    expect(df.chunks).not.toBeNull();
    const text = await dfs('df');
    expect(text.out).toMatch(/^NODES\s+SIZE\s+USED\s+FREE\s+USE%\n3 of 3 /);
    expect(text.out).toMatch(/chunks: \d+ referenced, 0 under-replicated, 0 missing/);
  });
});

describe('--json errors', () => {
  it('an error is one JSON object on stderr, with the same exit code; stdout stays empty', async () => {
    const r = await dfs('stat', '/no/such/thing', '--json');
    expect(r.code).toBe(EXIT.notFound);
    expect(r.out).toBe('');
    expect(JSON.parse(r.err)).toEqual({ ok: false, code: 'ERR_NOT_FOUND', message: expect.stringMatching(/no such/) });
    const usage = await dfs('put', '--json', '/only-one');
    expect(usage.code).toBe(EXIT.usage);
    expect(JSON.parse(usage.err)).toMatchObject({ ok: false, code: 'ERR_USAGE' });
    const exists = await dfs('mkdir', '/', '--json');
    expect(JSON.parse(exists.err)).toMatchObject({ ok: false, code: 'ERR_EXISTS' });
    expect(exists.code).toBe(EXIT.failure);
  });

  it('hints name npx dfs when dfs came through npm', async () => {
    const r = await dfsWith({ env: { npm_execpath: '/usr/lib/node_modules/npm/bin/npm-cli.js' } }, 'rm', '/no-such-dir-here/x');
    expect(r.code).toBe(EXIT.notFound);
    const d = remoteDir('npx');
    await dfs('mkdir', '-p', `${d}/sub`);
    const hinted = await dfsWith({ env: { npm_execpath: '/usr/lib/node_modules/npm/bin/npm-cli.js' } }, 'rm', d);
    expect(hinted.err).toMatch(/use npx dfs rm -r/);
  });
});

describe('the dfs process', () => {
  const bigBytes = 48 * 1024 * 1024;
  let big: string;
  beforeAll(async () => {
    const local = await mkdtemp(join(tmpdir(), 'dfs-cli-big-'));
    const file = join(local, 'big.bin');
    await writeFile(file, new SeededBytes(testSeed('cli-sigint')).bytes(bigBytes));
    big = '/process/big.bin';
    const r = await dfs('put', file, big);
    await rm(local, { recursive: true, force: true });
    expect(r.code, r.err).toBe(EXIT.ok);
  }, 120_000);

  function spawnDfs(args: string[]) {
    return spawn(process.execPath, [BIN, ...args, '--cluster', dir], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  }

  it('Ctrl-C in the middle of a get: exit 130 and no partial file left', async () => {
    const out = await tempDir();
    const target = join(out, 'big.bin');
    const child = spawnDfs(['get', big, target]);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
    const partial = `${target}.dfs-partial-${child.pid}`;
    // Bytes are arriving: the partial file has some.
    const watcher = new AbortController();
    try {
      for await (const _ of watch(out, { signal: watcher.signal })) {
        const size = await stat(partial).then((s) => s.size, () => 0);
        if (size > 0) break;
      }
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
    } finally {
      watcher.abort();
    }
    expect((await stat(partial)).size).toBeLessThan(bigBytes);
    child.kill('SIGINT');
    const [code, signal] = await exited;
    expect({ code, signal, stderr }).toEqual({ code: 130, signal: null, stderr: '' });
    expect(await readdir(out)).toEqual([]);
  }, 60_000);

  it('get - | head: the reader goes away, dfs ends quietly (exit 141, nothing on stderr)', async () => {
    const child = spawnDfs(['get', big, '-']);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
    await once(child.stdout, 'data');
    child.stdout.destroy();
    const [code] = await exited;
    expect({ code, stderr }).toEqual({ code: 141, stderr: '' });
  }, 60_000);
});
