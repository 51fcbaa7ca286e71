import { DfsError } from '../../errors/index.ts';
import type { Entry, ListedEntry, MasterStatus } from '../../meta/index.ts';
import { type ClusterOption, withMetaClient } from '../client-context.ts';
import { formatBytes, formatTable } from '../format.ts';
import type { CliIO } from '../io.ts';

type Json = { json?: boolean };

export async function mkdirCommand(path: string, options: ClusterOption & { parents?: boolean }, io: CliIO): Promise<void> {
  await withMetaClient(options, io, (c) => c.write({ op: 'mkdir', path, parents: options.parents === true }));
}

export async function rmCommand(path: string, options: ClusterOption & { recursive?: boolean }, io: CliIO): Promise<void> {
  const r = (await withMetaClient(options, io, (c) => c.write({ op: 'rm', path, recursive: options.recursive === true }))) as { removed: number };
  if (r.removed > 1) io.stderr.write(`removed ${r.removed} entries\n`);
}

export async function mvCommand(from: string, to: string, options: ClusterOption, io: CliIO): Promise<void> {
  await withMetaClient(options, io, (c) => c.write({ op: 'mv', from, to }));
}

export async function statCommand(path: string, options: ClusterOption & Json & { stale?: boolean }, io: CliIO): Promise<void> {
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
export async function lsCommand(path: string | undefined, options: ClusterOption & Json & { long?: boolean; stale?: boolean }, io: CliIO): Promise<void> {
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

export { statusCommand } from './nodes.ts';

export type { Entry };
