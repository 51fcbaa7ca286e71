import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/index.ts';

/**
 * The process adapter (bin/dfs.js -> cli/entry.ts): a rejection nobody handled, or an exception
 * nobody caught, is a bug; the process ends with one line and exit code 70, not a stack trace.
 * The stray failure is planted through --import, at 'beforeExit': after the command finished,
 * so always after entry.ts is in place.
 */
const BIN = new URL('../../bin/dfs.js', import.meta.url).pathname;

function dfsWith(plant: string, env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const { DFS_DEBUG: _debug, ...base } = process.env;
  const preload = `data:text/javascript,process.once("beforeExit",()=>{${plant}})`;
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', preload, BIN, '--version'], { timeout: 30_000, env: { ...base, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('dfs process: stray failures', () => {
  it('an unhandled rejection is one line, [ERR_INTERNAL], exit 70: no stack trace', async () => {
    const r = await dfsWith('Promise.reject(new Error("stray rejection"))');
    expect(r.stdout).toMatch(/^dfs\//); // the command itself ran and printed
    expect(r.stderr).toBe('dfs: internal error: unhandled rejection: stray rejection (a bug: please report it; DFS_DEBUG=1 shows the stack) [ERR_INTERNAL]\n');
    expect(r.code).toBe(EXIT.bug);
  });

  it('an uncaught exception too, its message kept on one line', async () => {
    const r = await dfsWith('throw new Error("stray\\nthrow")');
    expect(r.stderr).toBe('dfs: internal error: uncaught exception: stray throw (a bug: please report it; DFS_DEBUG=1 shows the stack) [ERR_INTERNAL]\n');
    expect(r.code).toBe(EXIT.bug);
  });

  it('DFS_DEBUG=1 adds the stack after that line', async () => {
    const r = await dfsWith('Promise.reject(new Error("late"))', { DFS_DEBUG: '1' });
    const [first, ...rest] = r.stderr.split('\n');
    expect(first).toMatch(/^dfs: internal error: unhandled rejection: late \(a bug: .*\) \[ERR_INTERNAL\]$/);
    expect(rest.join('\n')).toMatch(/^\s+at /m);
    expect(r.code).toBe(EXIT.bug);
  });
});
