import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { EXIT, main, VERSION } from '../../src/cli/index.ts';
import type { CliIO } from '../../src/cli/index.ts';
import { chunkBuffer, loadBlake3 } from '../../src/chunker/index.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
// main() sets process.exitCode, as the bin relies on; the test run must not inherit it.
afterEach(() => {
  process.exitCode = 0;
});

function captureIO(stdin: Uint8Array = new Uint8Array(0)): CliIO & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (t: string) => (out += t), isTTY: false },
    stderr: { write: (t: string) => (err += t), isTTY: false },
    stdin: Readable.from([Buffer.from(stdin)]),
    env: {},
    out: () => out,
    err: () => err,
  };
}

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
    const data = new SeededBytes(21).bytes(3_000_000);
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
    expect(table.out()).toMatch(/in 3 chunks/);
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
