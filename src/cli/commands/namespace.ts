import { DfsError, isDfsError } from '../../errors/index.ts';
import type { MetaClient } from '../../client/index.ts';
import { baseName, type Entry, type ListedEntry, normalizePath } from '../../meta/index.ts';
import { type ClusterOption, withMetaClient } from '../client-context.ts';
import { commandName } from '../command-name.ts';
import { formatBytes, formatTable } from '../format.ts';
import { type CliIO, info, type OutputFlags } from '../io.ts';
import { joinRemote, listAll, remoteKind, targetsFor } from '../remote-tree.ts';

type Options = ClusterOption & OutputFlags;

function atLeastOne(paths: readonly string[], command: string): void {
  if (paths.length === 0) throw new DfsError('ERR_USAGE', `dfs ${command} needs at least one path`);
}

/** `dfs mkdir [-p] /DIR...`. */
export async function mkdirCommand(paths: readonly string[], options: Options & { parents?: boolean }, io: CliIO): Promise<void> {
  atLeastOne(paths, 'mkdir');
  const created: string[] = [];
  await withMetaClient(options, io, async (c) => {
    for (const path of paths) {
      const r = (await c.write({ op: 'mkdir', path, parents: options.parents === true }).catch((err: unknown) => {
        throw isDfsError(err, 'ERR_NOT_FOUND') ? new DfsError('ERR_NOT_FOUND', `${err.message}: use ${commandName(io)} mkdir -p to make parent directories too`) : err;
      })) as { created?: string[] } | undefined;
      created.push(...(r?.created ?? []));
    }
  });
  if (options.json) io.stdout.write(JSON.stringify({ ok: true, created }) + '\n');
}

/** `dfs rm [-r] [-f] /PATH...`: -f: a path that does not exist is no error. */
export async function rmCommand(paths: readonly string[], options: Options & { recursive?: boolean; force?: boolean }, io: CliIO): Promise<void> {
  atLeastOne(paths, 'rm');
  let removed = 0;
  await withMetaClient(options, io, async (c) => {
    for (const path of paths) {
      try {
        const r = (await c.write({ op: 'rm', path, recursive: options.recursive === true })) as { removed: number };
        removed += r.removed;
      } catch (err) {
        if (options.force && isDfsError(err, 'ERR_NOT_FOUND')) continue;
        if (isDfsError(err, 'ERR_NOT_EMPTY')) throw new DfsError('ERR_NOT_EMPTY', `${path} is a directory and not empty: use ${commandName(io)} rm -r to remove it and everything in it`);
        throw err;
      }
    }
  });
  if (options.json) io.stdout.write(JSON.stringify({ ok: true, removed }) + '\n');
  else if (removed > 1) info(io, options, `removed ${removed} entries`);
}

/**
 * `dfs mv [-f] SOURCE... DEST`: into DEST when it is a directory (or ends in "/"); never over an
 * existing file without -f (with -f a file replaces a file atomically, like rename(2)).
 */
export async function mvCommand(args: readonly string[], options: Options & { force?: boolean }, io: CliIO): Promise<void> {
  if (args.length < 2) throw new DfsError('ERR_USAGE', 'dfs mv needs a source and a destination: dfs mv /FROM... /TO');
  const sources = args.slice(0, -1);
  const dest = args[args.length - 1]!;
  const moved: Array<{ from: string; to: string }> = [];
  await withMetaClient(options, io, async (c) => {
    const targets = targetsFor(sources, dest, await remoteKind(c, normalizePath(dest)), { command: 'mv', slashMakesDir: false, nameOf: (p) => baseName(normalizePath(p)), join: joinRemote }).map(normalizePath);
    for (const [i, from] of sources.entries()) {
      const to = targets[i]!;
      if (!options.force && normalizePath(from) !== to && (await remoteKind(c, to)) !== undefined) {
        throw new DfsError('ERR_EXISTS', `${to} already exists: use ${commandName(io)} mv -f to replace it`);
      }
      await c.write({ op: 'mv', from, to });
      moved.push({ from: normalizePath(from), to });
    }
  });
  if (options.json) io.stdout.write(JSON.stringify({ ok: true, moved }) + '\n');
}

export async function statCommand(path: string, options: Options & { stale?: boolean }, io: CliIO): Promise<void> {
  const entry = await withMetaClient(options, io, (c) => c.stat(path, { stale: options.stale === true }));
  if (options.json) {
    io.stdout.write(JSON.stringify({ path, ...entry }) + '\n');
    return;
  }
  const rows: Array<[string, string]> = [
    ['path', path],
    ['kind', entry.kind],
    ['owner', entry.owner],
    ['modified', new Date(entry.mtimeMs).toISOString()],
  ];
  if (entry.kind === 'file') {
    rows.push(['size', `${formatBytes(entry.size)} (${entry.size} bytes)`], ['chunks', String(entry.manifest.chunks.length)], ['blake3', entry.manifest.blake3], ['chunker', entry.manifest.chunker]);
  }
  io.stdout.write(rows.map(([k, v]) => `${k.padEnd(9)}${v}`).join('\n') + '\n');
}

/** `dfs ls`: every page of a directory, streamed out as it arrives. */
export async function lsCommand(path: string | undefined, options: Options & { long?: boolean; stale?: boolean }, io: CliIO): Promise<void> {
  const dir = path ?? '/';
  await withMetaClient(options, io, async (c) => {
    let after: string | undefined;
    const rows: ListedEntry[] = [];
    for (let page = 0; page < 1_000_000; page++) {
      const r = await c.list(dir, { ...(after !== undefined ? { after } : {}), limit: 1000, stale: options.stale === true });
      if (options.json) for (const e of r.entries) io.stdout.write(JSON.stringify(e) + '\n');
      else rows.push(...r.entries);
      if (r.next === undefined) break;
      after = r.next;
    }
    if (options.json) return;
    if (options.long) {
      io.stdout.write(formatTable(['KIND', 'SIZE', 'MODIFIED', 'OWNER', 'NAME'], rows.map((e) => [e.kind, e.kind === 'file' ? formatBytes(e.size) : '-', new Date(e.mtimeMs).toISOString().slice(0, 19).replace('T', ' '), e.owner, e.kind === 'dir' ? `${e.name}/` : e.name]), new Set([1])));
    } else {
      for (const e of rows) io.stdout.write(`${e.kind === 'dir' ? `${e.name}/` : e.name}\n`);
    }
  });
}

/** Bytes, files and directories under one path. */
interface Usage {
  readonly path: string;
  bytes: number;
  files: number;
  dirs: number;
}

/**
 * `dfs du [-s] [-b] [PATH...]`: the bytes (file sizes, before replication) and files under each
 * path; without -s, every directory below it too, deepest first, as du does.
 */
export async function duCommand(paths: readonly string[], options: Options & { summarize?: boolean; bytes?: boolean }, io: CliIO): Promise<void> {
  const roots = paths.length > 0 ? paths : ['/'];
  const rows: Usage[] = [];
  await withMetaClient(options, io, async (c) => {
    for (const root of roots) {
      const path = normalizePath(root);
      const entry = await c.stat(path);
      if (entry.kind === 'file') rows.push({ path, bytes: entry.size, files: 1, dirs: 0 });
      else await usageOf(c, path, options.summarize === true ? undefined : rows).then((u) => rows.push(u));
    }
  });
  if (options.json) {
    for (const r of rows) io.stdout.write(JSON.stringify(r) + '\n');
    return;
  }
  const size = (n: number) => (options.bytes ? String(n) : formatBytes(n));
  io.stdout.write(formatTable(['SIZE', 'FILES', 'PATH'], rows.map((r) => [size(r.bytes), String(r.files), r.path]), new Set([0, 1])));
}

/** Walks a directory; each subdirectory's usage goes to `rows` (when given) before its parent's. */
async function usageOf(c: MetaClient, dir: string, rows: Usage[] | undefined): Promise<Usage> {
  const total: Usage = { path: dir, bytes: 0, files: 0, dirs: 0 };
  for await (const e of listAll(c, dir)) {
    if (e.kind === 'file') {
      total.bytes += e.size;
      total.files += 1;
    } else {
      const sub = await usageOf(c, e.path, rows);
      rows?.push(sub);
      total.bytes += sub.bytes;
      total.files += sub.files;
      total.dirs += sub.dirs + 1;
    }
  }
  return total;
}

export { statusCommand } from './nodes.ts';

export type { Entry };
