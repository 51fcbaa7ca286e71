import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { EXIT, main, VERSION } from '../../src/cli/index.ts';
import { chunkBuffer, loadBlake3 } from '../../src/chunker/index.ts';
import { findLocalClusterDir } from '../../src/cli/cluster-dir.ts';
import { commandName } from '../../src/cli/command-name.ts';
import { clip, ProgressBar } from '../../src/cli/progress.ts';
import { localChild } from '../../src/cli/remote-tree.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';
import { captureIO as capture } from '../support/cli-io.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
// main() sets process.exitCode, as the bin relies on; the test run must not inherit it.
afterEach(() => {
  process.exitCode = 0;
});

const captureIO = (stdin: Uint8Array = new Uint8Array(0)) => capture({}, Readable.from([Buffer.from(stdin)]));

describe('dfs CLI', () => {
  it('--version prints the package version', async () => {
    const io = captureIO();
    expect(await main(['--version'], io)).toBe(EXIT.ok);
    expect(io.out()).toContain(`dfs/${VERSION}`);
  });

  it('--help lists the commands', async () => {
    const io = captureIO();
    expect(await main(['--help'], io)).toBe(EXIT.ok);
    expect(io.out()).toMatch(/Usage:/);
    expect(io.out()).toMatch(/chunk <file>/);
  });

  it('an unknown command is one line on stderr and exit code 2', async () => {
    const io = captureIO();
    expect(await main(['frobnicate'], io)).toBe(EXIT.usage);
    expect(io.err()).toBe('dfs: unknown command "frobnicate"; see dfs --help [ERR_USAGE]\n');
    expect(process.exitCode).toBe(EXIT.usage);
  });

  it('an unknown option is a usage error, not a stack trace', async () => {
    const io = captureIO();
    expect(await main(['chunk', 'x', '--bogus'], io)).toBe(EXIT.usage);
    expect(io.err().trim().split('\n')).toHaveLength(1);
    expect(io.err()).toMatch(/Unknown option `--bogus`/);
  });

  it('chunk prints every chunk of a file, the same as the chunker, and --json for scripts', async () => {
    const data = new SeededBytes(21).bytes(8_000_000);
    const file = join(await tempDir(), 'data.bin');
    await writeFile(file, data);
    const expected = await chunkBuffer(data, { blake3: await loadBlake3() });

    const io = captureIO();
    expect(await main(['chunk', file, '--json'], io)).toBe(EXIT.ok);
    const json = JSON.parse(io.out());
    expect(json.chunks).toBe(expected.length);
    expect(json.chunkList).toEqual(expected.map((c) => ({ offset: c.offset, length: c.length, id: c.id })));

    const table = captureIO();
    expect(await main(['chunk', file], table)).toBe(EXIT.ok);
    for (const c of expected) expect(table.out()).toContain(c.id);
    expect(expected.length).toBeGreaterThan(1);
    expect(table.out()).toContain(`in ${expected.length} chunks`);
  });

  it('chunk --avg alone brings min and max along (a quarter and twice it)', async () => {
    const file = join(await tempDir(), 'avg.bin');
    await writeFile(file, new SeededBytes(23).bytes(3_000_000));
    const io = captureIO();
    expect(await main(['chunk', file, '--avg', '256KiB', '--json'], io)).toBe(EXIT.ok);
    expect(JSON.parse(io.out()).params).toEqual({ minSize: 64 * 1024, avgSize: 256 * 1024, maxSize: 512 * 1024 });
  });

  it('chunk --avg alone out of range: the chunker refuses it, naming the sizes', async () => {
    const file = join(await tempDir(), 'avg-bad.bin');
    await writeFile(file, new SeededBytes(24).bytes(1000));
    const io = captureIO();
    expect(await main(['chunk', file, '--avg', '64MiB'], io)).not.toBe(EXIT.ok);
    expect(io.err()).toMatch(/invalid chunker parameters \(min 16777216, avg 67108864, max 134217728\)/);
  });

  it('chunk - reads stdin and reports what deduplicates within it', async () => {
    const half = new SeededBytes(22).bytes(1_000_000);
    const io = captureIO(Buffer.concat([half, half]));
    expect(await main(['chunk', '-', '--summary', '--min', '16KiB', '--avg', '64KiB', '--max', '256KiB'], io)).toBe(EXIT.ok);
    const m = /in (\d+) chunks.*; (\d+) unique/.exec(io.out());
    expect(m).not.toBeNull();
    expect(Number(m![2])).toBeLessThan(Number(m![1]));
  });

  it('errors name the problem: missing file (3), bad size (2)', async () => {
    const missing = captureIO();
    expect(await main(['chunk', '/nonexistent/file'], missing)).toBe(EXIT.notFound);
    expect(missing.err()).toBe('dfs: no such file: /nonexistent/file [ERR_NOT_FOUND]\n');
    const badSize = captureIO();
    expect(await main(['chunk', '-', '--avg', 'lots'], badSize)).toBe(EXIT.usage);
    expect(badSize.err()).toMatch(/--avg takes a size/);
  });

  it('the bin ends quietly when its reader closes the pipe early (dfs ... | head)', async () => {
    const file = join(await tempDir(), 'data.bin');
    await writeFile(file, new SeededBytes(testSeed('epipe')).bytes(8 * 1024 * 1024));
    const child = spawn(process.execPath, [new URL('../../bin/dfs.js', import.meta.url).pathname, 'chunk', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy(); // the reader is gone before the first line is written
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(stderr).not.toMatch(/Unhandled|EPIPE/);
    expect(code).toBe(0);
  });

  it('the bin runs on the pinned Node and exits non-zero with one line on error', async () => {
    const bin = new URL('../../bin/dfs.js', import.meta.url).pathname;
    const run = promisify(execFile);
    const ok = await run(process.execPath, [bin, '--version']);
    expect(ok.stdout).toContain(`dfs/${VERSION}`);
    expect(ok.stdout).toContain('node-v24');
    const failed = await run(process.execPath, [bin, 'chunk', '/nonexistent']).catch((e: { code: number; stderr: string }) => e);
    expect((failed as { code: number }).code).toBe(EXIT.notFound);
    expect((failed as { stderr: string }).stderr).toBe('dfs: no such file: /nonexistent [ERR_NOT_FOUND]\n');
  });
});

describe('dfs help, version, completion', () => {
  it('dfs help and dfs help COMMAND print the same as --help', async () => {
    const plain = captureIO();
    expect(await main(['help'], plain)).toBe(EXIT.ok);
    const flag = captureIO();
    await main(['--help'], flag);
    expect(plain.out()).toBe(flag.out());
    const put = captureIO();
    expect(await main(['help', 'put'], put)).toBe(EXIT.ok);
    expect(put.out()).toMatch(/put \[-f\] \[-r\] SOURCE\.\.\. DEST/);
    expect(put.out()).toMatch(/Examples:\n.*dfs put/);
    const unknown = captureIO();
    expect(await main(['help', 'frobnicate'], unknown)).toBe(EXIT.usage);
    expect(unknown.err()).toBe('dfs: unknown command "frobnicate"; see dfs help [ERR_USAGE]\n');
  });

  it('every command group lists its subcommands and an example', async () => {
    const expected: Record<string, string[]> = { cluster: ['init', 'up', 'down'], node: ['start', 'admit', 'drain', 'rm', 'scrub'], master: ['init', 'start'] };
    for (const [group, subs] of Object.entries(expected)) {
      const io = captureIO();
      expect(await main([group, '--help'], io)).toBe(EXIT.ok);
      const usage = /Usage:\n\s+\$ dfs (.*)\n/.exec(io.out())?.[1] ?? '';
      for (const sub of subs) expect(usage, group).toContain(sub);
      expect(io.out(), group).toMatch(new RegExp(`Examples:\\n(.*\\n)*dfs ${group} `));
    }
    const wrong = captureIO();
    expect(await main(['cluster', 'sideways'], wrong)).toBe(EXIT.usage);
    expect(wrong.err()).toBe('dfs: dfs cluster takes init, up, down, add, use, list, rm, not "sideways"; see dfs cluster --help [ERR_USAGE]\n');
  });

  it('dfs version and --version; --json gives an object', async () => {
    const io = captureIO();
    expect(await main(['version'], io)).toBe(EXIT.ok);
    expect(io.out()).toMatch(new RegExp(`^dfs/${VERSION.replace(/\./g, '\\.')} `));
    const json = captureIO();
    expect(await main(['version', '--json'], json)).toBe(EXIT.ok);
    expect(JSON.parse(json.out())).toMatchObject({ version: VERSION, node: process.version });
  });

  it('completion bash|zsh prints a script naming every command and the subcommands of each group', async () => {
    const bash = captureIO();
    expect(await main(['completion', 'bash'], bash)).toBe(EXIT.ok);
    expect(bash.out()).toMatch(/complete -o filenames -F _dfs_complete dfs/);
    for (const command of ['put', 'get', 'cat', 'du', 'df', 'rm', 'mv', 'cluster', 'node', 'completion']) expect(bash.out()).toMatch(new RegExp(`compgen -W "[^"]*\\b${command}\\b`));
    expect(bash.out()).toContain('cluster) subs="init up down add use list rm"');
    expect(bash.out()).toContain('node) subs="start admit drain rm scrub"');
    expect(bash.out()).toMatch(/rm\) subs=""; opts="-r --recursive -f --force /);
    const zsh = captureIO();
    expect(await main(['completion', 'zsh'], zsh)).toBe(EXIT.ok);
    expect(zsh.out()).toMatch(/^#compdef dfs\n/);
    expect(zsh.out()).toContain('bashcompinit');
    const fish = captureIO();
    expect(await main(['completion', 'fish'], fish)).toBe(EXIT.usage);
  });

  it('the bash script completes commands and subcommands in a real bash', async () => {
    const io = captureIO();
    await main(['completion', 'bash'], io);
    const script = `${io.out()}\nCOMP_WORDS=(dfs clu); COMP_CWORD=1; _dfs_complete; echo "\${COMPREPLY[@]}"\nCOMP_WORDS=(dfs node d); COMP_CWORD=2; _dfs_complete; echo "\${COMPREPLY[@]}"\nCOMP_WORDS=(dfs rm --rec); COMP_CWORD=2; _dfs_complete; echo "\${COMPREPLY[@]}"\n`;
    const r = await promisify(execFile)('bash', ['-c', script]);
    expect(r.stdout).toBe('cluster\ndrain\n--recursive\n');
  });
});

describe('scripting: --json errors, hints', () => {
  it('a usage error with --json is one JSON object on stderr, exit 2', async () => {
    const io = captureIO();
    expect(await main(['frobnicate', '--json'], io)).toBe(EXIT.usage);
    expect(io.out()).toBe('');
    expect(JSON.parse(io.err())).toEqual({ ok: false, code: 'ERR_USAGE', message: 'unknown command "frobnicate"; see dfs --help' });
    const missing = captureIO();
    expect(await main(['chunk', '/nonexistent', '--json'], missing)).toBe(EXIT.notFound);
    expect(JSON.parse(missing.err())).toEqual({ ok: false, code: 'ERR_NOT_FOUND', message: 'no such file: /nonexistent' });
    const option = captureIO();
    expect(await main(['ls', '--bogus', '--json'], option)).toBe(EXIT.usage);
    expect(JSON.parse(option.err())).toMatchObject({ ok: false, code: 'ERR_USAGE' });
  });

  it('commandName: npx dfs when run through npm or from node_modules/.bin, else dfs', () => {
    expect(commandName({ env: {} })).toBe('dfs');
    expect(commandName({ env: {}, argv1: '/usr/local/bin/dfs' })).toBe('dfs');
    expect(commandName({ env: { npm_execpath: '/usr/lib/node_modules/npm/bin/npx-cli.js' } })).toBe('npx dfs');
    expect(commandName({ env: {}, argv1: '/home/u/proj/node_modules/.bin/dfs' })).toBe('npx dfs');
  });

  it('a broken dfs-client.json is one clear line and exit 2, never an internal error', async () => {
    const dir = await tempDir();
    const cases: Array<[string, RegExp]> = [
      ['{bad', /dfs-client\.json is not valid JSON/],
      ['[]', /dfs-client\.json: .*expected object, got array/],
      ['null', /dfs-client\.json: .*expected object, got null/],
      ['{"masters": 5}', /dfs-client\.json: field masters: expected array/],
    ];
    for (const [text, message] of cases) {
      await writeFile(join(dir, 'dfs-client.json'), text);
      const io = captureIO();
      expect(await main(['ls', '/', '--cluster', dir], io), text).toBe(EXIT.usage);
      expect(io.err(), text).toMatch(message);
      expect(io.err(), text).toMatch(/^dfs: [^\n]* \[ERR_INVALID_ARGUMENT\]\n$/);
      expect(io.err(), text).not.toMatch(/internal error|a bug/);
    }
  });

  it('cluster down finds the cluster from a subdirectory, as other commands do', async () => {
    const root = await tempDir();
    await mkdir(join(root, '.dfs-local'));
    await writeFile(join(root, '.dfs-local', 'cluster.json'), '{}');
    await mkdir(join(root, 'a', 'b'), { recursive: true });
    expect(await findLocalClusterDir(undefined, { env: {} }, join(root, 'a', 'b'))).toBe(join(root, '.dfs-local'));
    expect(await findLocalClusterDir(undefined, { env: { DFS_CLUSTER: '/elsewhere' } }, join(root, 'a'))).toBe('/elsewhere');
    expect(await findLocalClusterDir('/c/dfs-client.json', { env: {} }, root)).toBe('/c');
    const bare = await tempDir();
    expect(await findLocalClusterDir(undefined, { env: {} }, bare)).toBe(join(bare, '.dfs-local'));
  });
});

describe('dfs get -r: where listed entries go', () => {
  it('refuses a listed name that would leave the target directory', () => {
    for (const bad of ['..', '.', '', '../etc', 'a/b', 'x\0y']) expect(() => localChild('/tmp/t', bad), JSON.stringify(bad)).toThrow(/not a file name/);
    expect(localChild('/tmp/t', 'a..b')).toBe('/tmp/t/a..b');
  });
});

describe('progress bar', () => {
  function tty(columns?: number) {
    const writes: string[] = [];
    return { writes, out: { write: (t: string) => void writes.push(t), isTTY: true, ...(columns !== undefined ? { columns } : {}) } };
  }

  it('is clipped to the terminal width (no wrapped, stale lines) and ends with its final figures', () => {
    const { writes, out } = tty(70);
    let now = 0;
    const bar = new ProgressBar({ out, label: `put /${'very-long-name/'.repeat(10)}file.bin`, totalBytes: 1000, now: () => now, intervalMs: 0 });
    for (let i = 0; i < 10; i++) {
      now += 100;
      bar.advance(100);
    }
    bar.finish();
    for (const w of writes.filter((x) => x !== '\n')) {
      expect(w.startsWith('\r')).toBe(true);
      expect(w.endsWith('\x1b[K')).toBe(true);
      expect(w.length - '\r'.length - '\x1b[K'.length).toBeLessThanOrEqual(69);
    }
    expect(writes.at(-2)).toMatch(/100% .*ETA 0s\x1b\[K$/);
    expect(writes.at(-1)).toBe('\n');
  });

  it('draws nothing when not a terminal or when quiet; clear() erases a drawn line', () => {
    const notTty = { writes: [] as string[] };
    new ProgressBar({ out: { write: (t: string) => void notTty.writes.push(t), isTTY: false }, label: 'x', intervalMs: 0 }).advance(5);
    expect(notTty.writes).toEqual([]);
    const quiet = tty(80);
    const q = new ProgressBar({ out: quiet.out, label: 'x', intervalMs: 0, quiet: true });
    q.advance(5);
    q.finish();
    expect(quiet.writes).toEqual([]);
    const cleared = tty(80);
    const c = new ProgressBar({ out: cleared.out, label: 'x', intervalMs: 0 });
    c.advance(5);
    c.clear();
    expect(cleared.writes.at(-1)).toBe('\r\x1b[K');
  });

  it('clip keeps the end of the line (the figures) and fits columns - 1', () => {
    expect(clip('short', 80)).toBe('short');
    expect(clip('abcdefghij', 6)).toBe('…ghij');
    expect(clip('abcdefghij', undefined)).toBe('abcdefghij');
  });
});
