import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../support/tmp.ts';

const tempDir = useTempDirs();
const BIN = new URL('../../bin/dfs.js', import.meta.url).pathname;
const run = promisify(execFile);

/** The real binary, in the background, with its own config directory. */
function startDfs(cwd: string, args: string[]): { child: ChildProcess; stdout: () => string; stderr: () => string } {
  const { DFS_SWARM_KEY: _k, DFS_CLUSTER: _c, DFS_TOKEN: _t, ...base } = process.env;
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...base, DFS_CONFIG_DIR: join(cwd, 'config') }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return { child, stdout: () => out, stderr: () => err };
}

/**
 * Every live process (not `except`) whose command line mentions `dir`: what a cluster started
 * there runs (each master and node gets `--dir <dir>/...`). Zombies have an empty cmdline.
 */
async function processesMentioning(dir: string, except: ReadonlySet<number>): Promise<Array<{ pid: number; cmdline: string }>> {
  const out: Array<{ pid: number; cmdline: string }> = [];
  for (const entry of await readdir('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || except.has(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').then((t) => t.split('\0').join(' '), () => '');
    if (cmdline.includes(dir)) out.push({ pid, cmdline });
  }
  return out;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe();
    if (got !== undefined) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.runIf(process.platform === 'linux')('Ctrl-C and dfs cluster up: nothing is left running', () => {
  it('SIGINT to a foreground cluster up stops every process it started, and it exits 0', async () => {
    const cwd = await tempDir();
    const dir = join(cwd, 'fg');
    const up = startDfs(cwd, ['cluster', 'up', '--cluster', dir, '--masters', '1', '--nodes', '2']);
    const exited = once(up.child, 'exit');
    await until('press Ctrl-C', async () => (up.stdout().includes('press Ctrl-C to stop') ? true : undefined), 60_000);
    const running = await processesMentioning(dir, new Set([up.child.pid!]));
    expect(running.map((p) => p.cmdline.match(/ (master|node) start /)?.[1]).sort()).toEqual(['master', 'node', 'node']);

    up.child.kill('SIGINT');
    const [code] = await exited;
    expect(code, up.stderr()).toBe(0);
    expect(up.stdout()).toContain('stopping...');
    expect(await processesMentioning(dir, new Set())).toEqual([]);
  });

  it('SIGINT to cluster up --detach while its first master starts leaves no process behind; cluster down then finds nothing running', async () => {
    const cwd = await tempDir();
    const dir = join(cwd, 'bg');
    const up = startDfs(cwd, ['cluster', 'up', '--detach', '--cluster', dir, '--masters', '3', '--nodes', '2']);
    const exited = once(up.child, 'exit');
    const parent = new Set([up.child.pid!]);
    // As soon as the first master's process exists (before it is ready, before any pid is final).
    const first = await until('the first master process', async () => (await processesMentioning(dir, parent)).find((p) => / master start /.test(p.cmdline)));
    up.child.kill('SIGINT');
    const [code] = await exited;
    expect(code, up.stderr()).toBe(130);
    expect(up.stderr()).toMatch(/^dfs: interrupted: stopped every process of the cluster in /m);
    expect(await processesMentioning(dir, new Set())).toEqual([]);
    expect(() => process.kill(first.pid, 0)).toThrow();

    expect(JSON.parse(await readFile(join(dir, 'cluster.json'), 'utf8')).pids).toBeUndefined();
    const { DFS_SWARM_KEY: _k, ...base } = process.env;
    const down = await run(process.execPath, [BIN, 'cluster', 'down', '--cluster', dir], { cwd, env: base });
    expect(down.stdout).toBe('nothing was running\n');
  });

  it('SIGINT to a foreground cluster up while its storage nodes start leaves no process behind either', async () => {
    const cwd = await tempDir();
    const dir = join(cwd, 'fg-starting');
    const up = startDfs(cwd, ['cluster', 'up', '--cluster', dir, '--masters', '1', '--nodes', '3']);
    const exited = once(up.child, 'exit');
    await until('a storage node process', async () => (await processesMentioning(dir, new Set([up.child.pid!]))).find((p) => / node start /.test(p.cmdline)));
    up.child.kill('SIGINT');
    const [code] = await exited;
    expect(code, up.stderr()).toBe(130);
    expect(await processesMentioning(dir, new Set())).toEqual([]);
  });
});
