import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
const ROOT = new URL('../../', import.meta.url).pathname;
const BIN = join(ROOT, 'bin', 'dfs.js');
const run = promisify(execFile);

/** The README marks each block meant to be run, as written, with this comment before its fence. */
const MARK = '<!-- readme-test -->';

/** The command lines of every marked block: comments and blank lines dropped, in order. */
function markedCommands(readme: string): string[][] {
  const blocks: string[][] = [];
  const lines = readme.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== MARK) continue;
    const fence = lines[i + 1] ?? '';
    if (!/^```(sh|bash|shell)?$/.test(fence.trim())) throw new Error(`README line ${i + 2}: ${MARK} must come right before a \`\`\`sh fence`);
    const block: string[] = [];
    for (let j = i + 2; j < lines.length && !lines[j]!.startsWith('```'); j++) {
      const line = lines[j]!.trim();
      if (line !== '' && !line.startsWith('#')) block.push(line);
    }
    blocks.push(block);
  }
  return blocks;
}

/**
 * A README line as this test runs it: `npx dfs` is the binary under test (this checkout's
 * bin/dfs.js under this Node); `npm start` is the tour it runs (`dfs tour`), with a small file.
 * `npm ci` and `npm test` are what got us here, and are skipped (undefined).
 */
function asRun(line: string): string | undefined {
  const command = line.replace(/\s+#.*$/, '');
  if (/^npm (ci|test)\b/.test(command)) return undefined;
  const dfs = `"${process.execPath}" "${BIN}"`;
  if (/^npm start\b/.test(command)) return `${dfs} tour --mib 8`;
  return command.replace(/^npx dfs\b/, dfs);
}

describe('the README', () => {
  it('marks the quick start blocks: npm ci, npm start, npm test first, then a local cluster', async () => {
    const blocks = markedCommands(await readFile(join(ROOT, 'README.md'), 'utf8'));
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    expect(blocks[0]!.map((l) => l.replace(/\s+#.*$/, ''))).toEqual(['npm ci', 'npm start', 'npm test']);
    expect(blocks.slice(1).flat().some((l) => l.startsWith('npx dfs cluster up'))).toBe(true);
    expect(blocks.slice(1).flat().at(-1)).toMatch(/^npx dfs cluster down\b/);
  });

  it(
    'runs the commands of every marked block, as written, in a fresh directory: each exits 0',
    async () => {
      const blocks = markedCommands(await readFile(join(ROOT, 'README.md'), 'utf8'));
      const cwd = await tempDir();
      const { DFS_CLUSTER: _c, DFS_TOKEN: _t, DFS_SWARM_KEY: _k, ...base } = process.env;
      const env = { ...base, DFS_CONFIG_DIR: join(cwd, '.config') };
      const ran: string[] = [];
      try {
        for (const line of blocks.flat()) {
          const command = asRun(line);
          if (command === undefined) continue;
          const r = await run('/bin/sh', ['-c', command], { cwd, env, timeout: 90_000, maxBuffer: 16 << 20 }).then(
            (x) => ({ code: 0, ...x }),
            (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code ?? -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }),
          );
          expect(r.code, `README: ${line}\n${r.stderr}${r.stdout.slice(-2000)}`).toBe(0);
          ran.push(line);
        }
      } finally {
        // Whatever happened, nothing of the README's cluster outlives the test.
        await run(process.execPath, [BIN, 'cluster', 'down'], { cwd, env }).catch(() => {});
      }
      expect(ran.some((l) => l.startsWith('npm start')), 'the tour ran').toBe(true);
    },
    240_000,
  );
});
