import { execFile } from 'node:child_process';
import { copyFile, cp, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';
import { useTempDirs } from '../support/tmp.ts';

/**
 * The package as npm installs it, on a machine that never saw the checkout: compiled JavaScript
 * (Node refuses to strip TypeScript under node_modules), bin/dfs.js, and the dependencies npm
 * fetches. Built from a staging copy, so the test writes nothing into the checkout.
 */
const tempDir = useTempDirs();
const REPO = new URL('../..', import.meta.url).pathname;
const run = promisify(execFile);
/** The pinned Node (the `node` npm package), which the tests themselves run on. */
const PINNED_NODE = process.execPath;
const SYSTEM_NODE = '/usr/bin/node';

interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function sh(file: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Ran> {
  const { DFS_SWARM_KEY: _key, DFS_TOKEN: _token, DFS_CLUSTER: _cluster, ...base } = process.env;
  try {
    const r = await run(file, args, { cwd, timeout: 120_000, env: { ...base, ...env }, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number | string; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

/** npm pack of a staging copy (package.json, bin, docs, dist compiled from src): the tarball's path. */
async function packTarball(): Promise<string> {
  const stage = await tempDir();
  await cp(join(REPO, 'bin'), join(stage, 'bin'), { recursive: true });
  for (const f of ['package.json', 'README.md', 'ARCHITECTURE.md']) await copyFile(join(REPO, f), join(stage, f));
  const tsc = join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
  const built = await sh(PINNED_NODE, [tsc, '-p', join(REPO, 'tsconfig.build.json'), '--outDir', join(stage, 'dist')], REPO);
  expect(built.code, built.stdout + built.stderr).toBe(0);
  const out = await tempDir();
  const packed = await sh('npm', ['pack', '--ignore-scripts', '--pack-destination', out], stage);
  expect(packed.code, packed.stderr).toBe(0);
  const [tarball] = (await readdir(out)).filter((f) => f.endsWith('.tgz'));
  expect(tarball).toBeDefined();
  return join(out, tarball!);
}

describe('the npm package', () => {
  it('installs from its tarball and runs a cluster, a put and a get on the pinned Node; an old Node gets one line naming the version needed', { timeout: 300_000 }, async () => {
    const tarball = await packTarball();
    const listed = await sh('tar', ['-tzf', tarball], REPO);
    expect(listed.stdout).toMatch(/package\/dist\/cli\/entry\.js/);
    expect(listed.stdout).not.toMatch(/package\/src\//);
    expect(listed.stdout).not.toMatch(/package\/test\//);

    const home = await tempDir();
    await writeFile(join(home, 'package.json'), '{"name":"somebody-else","private":true}\n');
    const installed = await sh('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], home);
    expect(installed.code, installed.stderr).toBe(0);
    const dfsBin = join(home, 'node_modules', '.bin', 'dfs');

    const old = await sh(SYSTEM_NODE, ['--version'], home);
    const [major = 0, minor = 0] = old.stdout.trim().replace(/^v/, '').split('.').map(Number);
    if (old.code === 0 && (major < 22 || (major === 22 && minor < 18))) {
      const refused = await sh(SYSTEM_NODE, [dfsBin, 'status'], home);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/^dfs needs Node\.js 22\.18 or newer .*this is Node\.js \d+\.\d+\.\d+/);
      expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    }

    const help = await sh(PINNED_NODE, [dfsBin, '--help'], home);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/Usage:/);

    const cwd = join(home, 'work');
    await mkdir(cwd);
    const up = await sh(PINNED_NODE, [dfsBin, 'cluster', 'up', '--detach'], cwd);
    expect(up.code, up.stderr).toBe(0);
    try {
      const bytes = new SeededBytes(testSeed('package')).fill(new Uint8Array(3 * 1024 * 1024 + 17));
      await writeFile(join(cwd, 'f.bin'), bytes);
      const put = await sh(PINNED_NODE, [dfsBin, 'put', 'f.bin', '/f.bin'], cwd);
      expect(put.code, put.stderr).toBe(0);
      const get = await sh(PINNED_NODE, [dfsBin, 'get', '/f.bin', 'back.bin'], cwd);
      expect(get.code, get.stderr).toBe(0);
      const same = await sh('cmp', ['f.bin', 'back.bin'], cwd);
      expect(same.code, same.stdout).toBe(0);
    } finally {
      const down = await sh(PINNED_NODE, [dfsBin, 'cluster', 'down'], cwd);
      expect(down.code, down.stderr).toBe(0);
    }
  });
});
