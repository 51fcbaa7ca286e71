import type { MetaClient } from '../../client/index.ts';
import { DfsError } from '../../errors/index.ts';
import type { MasterStatus, NodeView } from '../../meta/index.ts';
import { type ClusterOption, withMetaClient } from '../client-context.ts';
import { formatBytes, formatTable } from '../format.ts';
import { commandName } from '../command-name.ts';
import { SUBCOMMANDS } from '../groups.ts';
import { type CliIO, info, type OutputFlags } from '../io.ts';

type Json = OutputFlags;

async function listNodes(c: MetaClient): Promise<NodeView[]> {
  const value = await c.leaderRequest({ type: 'nodes' });
  if (!Array.isArray(value)) throw new DfsError('ERR_PROTOCOL', 'the leader answered nodes with something that is not a list');
  return value as NodeView[];
}

/** A short, readable form of a peer id: its last 8 characters. */
function shortId(id: string): string {
  return id.length > 10 ? `…${id.slice(-8)}` : id;
}

function ageOf(ms: number | null): string {
  if (ms === null) return '-';
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`;
}

function nodeRows(nodes: readonly NodeView[]): string[][] {
  return nodes.map((n) => [
    n.name ?? shortId(n.id),
    n.state,
    `${formatBytes(n.usedBytes)} / ${formatBytes(n.capacityBytes)}`,
    String(n.chunks),
    ageOf(n.heartbeatAgeMs),
    String(n.repairsInFlight),
    shortId(n.id),
    n.addr.split('/p2p/')[0] ?? n.addr,
  ]);
}

const NODE_HEADER = ['NODE', 'STATE', 'USED / CAPACITY', 'CHUNKS', 'HEARD', 'REPAIRS', 'PEER', 'ADDRESS'];

/** `dfs nodes`: every storage node as the leader sees it. */
export async function nodesCommand(options: ClusterOption & Json, io: CliIO): Promise<void> {
  const nodes = await withMetaClient(options, io, listNodes);
  if (options.json) {
    io.stdout.write(JSON.stringify(nodes) + '\n');
    return;
  }
  io.stdout.write(nodes.length === 0 ? 'no storage nodes registered\n' : formatTable(NODE_HEADER, nodeRows(nodes), new Set([3, 5])));
}

/** The node a user named: its name, its full peer id, or a unique end of its peer id. */
function resolveNode(nodes: readonly NodeView[], ref: string, io: CliIO): NodeView {
  const exact = nodes.filter((n) => n.id === ref || n.name === ref);
  const matches = exact.length > 0 ? exact : nodes.filter((n) => n.id.endsWith(ref.replace(/^…/, '')));
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0) throw new DfsError('ERR_NOT_FOUND', `no storage node "${ref}": see ${commandName(io)} nodes`);
  throw new DfsError('ERR_INVALID_ARGUMENT', `"${ref}" names ${matches.length} storage nodes: give the full peer id (${commandName(io)} nodes --json)`);
}

/** `dfs rebalance [--max N]`: moves copies from the fullest to the emptiest nodes, in the background. */
export async function rebalanceCommand(options: ClusterOption & Json & { max?: string }, io: CliIO): Promise<void> {
  const maxChunks = options.max === undefined ? 10_000 : Number(options.max);
  if (!Number.isSafeInteger(maxChunks) || maxChunks < 1) throw new DfsError('ERR_USAGE', `--max takes a positive number of chunks, not "${String(options.max)}"`);
  await withMetaClient(options, io, (c) => c.leaderRequest({ type: 'rebalance', maxChunks }), { admin: true });
  if (options.json) io.stdout.write(JSON.stringify({ ok: true, maxChunks }) + '\n');
  info(io, options, `rebalancing: up to ${maxChunks} chunk copies move from the fullest to the emptiest nodes, within each node's copy budget; ${commandName(io)} nodes shows usage even out`);
}

/** What `dfs node` does besides start. */
const NODE_ACTIONS: readonly string[] = (SUBCOMMANDS.node ?? []).filter((a) => a !== 'start');

/** `dfs node admit|drain|rm|scrub <node>`. */
export async function nodeAdminCommand(action: string, ref: string | undefined, options: ClusterOption & Json & { force?: boolean; now?: boolean }, io: CliIO): Promise<void> {
  if (!NODE_ACTIONS.includes(action)) throw new DfsError('ERR_USAGE', `dfs node takes start, ${NODE_ACTIONS.join(', ')}, not "${action}"`);
  if (!ref) throw new DfsError('ERR_USAGE', `dfs node ${action} needs a node: its name or peer id (see ${commandName(io)} nodes)`);
  if (action === 'scrub' && !options.now) throw new DfsError('ERR_USAGE', 'dfs node scrub needs --now (nodes scrub in the background anyway; --now re-hashes every chunk at once)');
  const done = (line: string, label: string, id: string): void => {
    if (options.json) io.stdout.write(JSON.stringify({ ok: true, action, node: label, id }) + '\n');
    info(io, options, line);
  };
  await withMetaClient(options, io, async (c) => {
    const node = resolveNode(await listNodes(c), ref, io);
    const label = node.name ?? shortId(node.id);
    const name = commandName(io);
    switch (action) {
      case 'admit':
        await c.write({ op: 'admitNode', nodeId: node.id });
        done(`node ${label} admitted: it gets new data now`, label, node.id);
        return;
      case 'drain':
        await c.write({ op: 'drainNode', nodeId: node.id });
        done(`node ${label} is draining: its copies are being made elsewhere; ${name} nodes shows its chunks go to 0, then ${name} node rm ${label}`, label, node.id);
        return;
      case 'rm':
        await c.write({ op: 'removeNode', nodeId: node.id, force: options.force === true });
        done(`node ${label} removed${options.force ? ' (forced)' : ''}`, label, node.id);
        return;
      case 'scrub':
        await c.leaderRequest({ type: 'scrubNode', nodeId: node.id });
        done(`node ${label} will re-hash every chunk now (a corrupt one is quarantined and copied again from a good one)`, label, node.id);
        return;
    }
  }, { admin: true });
}

/**
 * `dfs status`: every master's role, term, indexes and lag; the storage nodes and the health
 * of the chunks, as the leader sees them. Exit code 1 without a leader, and when any chunk is
 * under-replicated or any node is not alive (scripts can wait on it). A master that does not
 * answer is a row of its own, ROLE "unreachable", the reason under ERROR. With --json, one
 * object: `masters` (one entry per master), `nodes` and `chunks` (null without a leader).
 */
export async function statusCommand(options: ClusterOption & Json, io: CliIO): Promise<void> {
  const { all, nodes } = await withMetaClient(options, io, async (c) => {
    const all = await c.statusAll();
    const hasLeader = all.some((a) => a.status?.role === 'leader');
    const nodes = hasLeader ? await listNodes(c).catch(() => null) : null;
    return { all, nodes };
  });
  const leader: MasterStatus | undefined = all.find((a) => a.status?.role === 'leader')?.status;
  const chunks = leader?.chunks ?? null;
  if (options.json) {
    io.stdout.write(JSON.stringify({ masters: all, nodes, chunks }) + '\n');
  } else {
    const rows = all.map(({ addr, status, error }) => {
      // The address has its own column: the reason names it "the master" (--json keeps it whole).
      if (!status) return ['?', 'unreachable', '-', '-', '-', '-', (error ?? 'no answer').split(addr).join('the master').replace(/\s+/g, ' '), addr];
      const lag = leader?.followerLag?.[status.peerId];
      return [status.name, status.role, String(status.term), String(status.commitIndex), String(status.appliedIndex), status.role === 'leader' ? '0' : lag === undefined ? '?' : String(lag), '', addr];
    });
    io.stdout.write(formatTable(['MASTER', 'ROLE', 'TERM', 'COMMIT', 'APPLIED', 'LAG', 'ERROR', 'ADDRESS'], rows, new Set([2, 3, 4, 5])));
    if (leader) io.stdout.write(`\nleader ${leader.name}; ${leader.counts.entries} namespace entries, ${leader.counts.files} files, ${leader.counts.nodes} storage nodes\n`);
    if (nodes && nodes.length > 0) io.stdout.write('\n' + formatTable(NODE_HEADER, nodeRows(nodes), new Set([3, 5])));
    if (chunks) {
      const rate = chunks.copiesPerSecond > 0 ? `, repairing at ${chunks.copiesPerSecond.toFixed(1)} copies/s` : '';
      io.stdout.write(
        `\nchunks: ${chunks.total} referenced, ${chunks.underReplicated} under-replicated, ${chunks.missing} missing, ${chunks.repairing} copies under way${rate}` +
          (chunks.ready ? '' : ' (the leader is still waiting for node reports)') +
          '\n',
      );
    }
  }
  if (!leader) throw new DfsError('ERR_NO_QUORUM', 'no leader: fewer than a majority of the masters are reachable, or an election is under way');
  const notAlive = (nodes ?? []).filter((n) => n.state !== 'alive');
  if (chunks && chunks.underReplicated > 0) {
    throw new DfsError('ERR_UNDER_REPLICATED', `${chunks.underReplicated} chunk(s) have fewer copies than the replication factor${chunks.missing > 0 ? ` (${chunks.missing} with none left)` : ''}; repair is ${chunks.repairing > 0 ? 'under way' : 'waiting for room or nodes'}`);
  }
  if (notAlive.length > 0) {
    throw new DfsError('ERR_UNDER_REPLICATED', `${notAlive.length} storage node(s) not alive: ${notAlive.map((n) => `${n.name ?? shortId(n.id)} ${n.state}`).join(', ')}`);
  }
}

/**
 * `dfs df`: the cluster's raw space (every storage node's capacity, used and free, summed; a
 * dead or pending node's space is shown apart: no new data goes there) and the health of its
 * chunks (the leader's status). Informational: exit 0 whatever the health (dfs status fails on it).
 */
export async function dfCommand(options: ClusterOption & Json & { bytes?: boolean }, io: CliIO): Promise<void> {
  const { nodes, chunks } = await withMetaClient(options, io, async (c) => {
    const nodes = await listNodes(c);
    const all = await c.statusAll();
    return { nodes, chunks: all.find((a) => a.status?.role === 'leader')?.status?.chunks ?? null };
  });
  const serving = nodes.filter((n) => n.state === 'alive' || n.state === 'suspect' || n.state === 'draining');
  const sum = (list: readonly NodeView[], field: 'capacityBytes' | 'usedBytes' | 'freeBytes') => list.reduce((n, x) => n + x[field], 0);
  const capacityBytes = sum(serving, 'capacityBytes');
  const usedBytes = sum(serving, 'usedBytes');
  const freeBytes = sum(serving, 'freeBytes');
  const byState: Record<string, number> = {};
  for (const n of nodes) byState[n.state] = (byState[n.state] ?? 0) + 1;
  if (options.json) {
    io.stdout.write(JSON.stringify({ nodes: nodes.length, nodesByState: byState, capacityBytes, usedBytes, freeBytes, chunks }) + '\n');
    return;
  }
  const size = (n: number) => (options.bytes ? String(n) : formatBytes(n));
  const usePercent = capacityBytes > 0 ? `${Math.round((100 * usedBytes) / capacityBytes)}%` : '-';
  io.stdout.write(formatTable(['NODES', 'SIZE', 'USED', 'FREE', 'USE%'], [[`${serving.length} of ${nodes.length}`, size(capacityBytes), size(usedBytes), size(freeBytes), usePercent]], new Set([1, 2, 3, 4])));
  const states = Object.entries(byState).map(([state, n]) => `${n} ${state}`).join(', ');
  io.stdout.write(`storage nodes: ${states || 'none registered'}; space is raw (every copy counts)\n`);
  if (chunks) {
    io.stdout.write(`chunks: ${chunks.total} referenced, ${chunks.underReplicated} under-replicated, ${chunks.missing} missing${chunks.ready ? '' : ' (the leader is still waiting for node reports)'}\n`);
  } else {
    io.stdout.write('chunks: unknown (no leader answered)\n');
  }
}
