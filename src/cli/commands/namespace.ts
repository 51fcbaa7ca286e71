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

/**
 * `dfs status`: every master's role, term, indexes and lag; exit code 1 without a leader. A
 * master that does not answer (down, or stopped and timing out) is a row of its own, ROLE
 * "unreachable" and the reason under ERROR; with --json, an entry with `code` and `error`.
 */
export async function statusCommand(options: ClusterOption & Json, io: CliIO): Promise<void> {
  const all = await withMetaClient(options, io, (c) => c.statusAll());
  if (options.json) {
    io.stdout.write(JSON.stringify(all) + '\n');
  } else {
    const leader = all.find((a) => a.status?.role === 'leader')?.status;
    const rows = all.map(({ addr, status, error }) => {
      // The address has its own column: the reason names it "the master" (--json keeps it whole).
      if (!status) return ['?', 'unreachable', '-', '-', '-', '-', (error ?? 'no answer').split(addr).join('the master').replace(/\s+/g, ' '), addr];
      const lag = leader?.followerLag?.[status.peerId];
      return [status.name, status.role, String(status.term), String(status.commitIndex), String(status.appliedIndex), status.role === 'leader' ? '0' : lag === undefined ? '?' : String(lag), '', addr];
    });
    io.stdout.write(formatTable(['MASTER', 'ROLE', 'TERM', 'COMMIT', 'APPLIED', 'LAG', 'ERROR', 'ADDRESS'], rows, new Set([2, 3, 4, 5])));
    const s: MasterStatus | undefined = leader;
    if (s) io.stdout.write(`\nleader ${s.name}; ${s.counts.entries} namespace entries, ${s.counts.files} files, ${s.counts.nodes} storage nodes\n`);
  }
  if (!all.some((a) => a.status?.role === 'leader')) {
    throw new DfsError('ERR_NO_QUORUM', 'no leader: fewer than a majority of the masters are reachable, or an election is under way');
  }
}

export type { Entry };
