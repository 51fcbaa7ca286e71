import type { MetaClient } from '../../client/index.ts';
import { DfsError } from '../../errors/index.ts';
import type { MasterStatus, NodeView } from '../../meta/index.ts';
import { type ClusterOption, withMetaClient } from '../client-context.ts';
import { formatBytes, formatTable } from '../format.ts';
import type { CliIO } from '../io.ts';

type Json = { json?: boolean };

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
function resolveNode(nodes: readonly NodeView[], ref: string): NodeView {
  const exact = nodes.filter((n) => n.id === ref || n.name === ref);
  const matches = exact.length > 0 ? exact : nodes.filter((n) => n.id.endsWith(ref.replace(/^…/, '')));
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0) throw new DfsError('ERR_NOT_FOUND', `no storage node "${ref}": see dfs nodes`);
  throw new DfsError('ERR_INVALID_ARGUMENT', `"${ref}" names ${matches.length} storage nodes: give the full peer id (dfs nodes --json)`);
}

/** `dfs rebalance [--max N]`: moves copies from the fullest to the emptiest nodes, in the background. */
export async function rebalanceCommand(options: ClusterOption & { max?: string }, io: CliIO): Promise<void> {
  const maxChunks = options.max === undefined ? 10_000 : Number(options.max);
  if (!Number.isSafeInteger(maxChunks) || maxChunks < 1) throw new DfsError('ERR_USAGE', `--max takes a positive number of chunks, not "${String(options.max)}"`);
  await withMetaClient(options, io, (c) => c.leaderRequest({ type: 'rebalance', maxChunks }), { admin: true });
  io.stderr.write(`rebalancing: up to ${maxChunks} chunk copies move from the fullest to the emptiest nodes, within each node's copy budget; dfs nodes shows usage even out\n`);
}

/** `dfs node admit|drain|rm|scrub <node>`. */
export async function nodeAdminCommand(action: string, ref: string | undefined, options: ClusterOption & { force?: boolean; now?: boolean }, io: CliIO): Promise<void> {
  if (!ref) throw new DfsError('ERR_USAGE', `dfs node ${action} needs a node: its name or peer id (see dfs nodes)`);
  await withMetaClient(options, io, async (c) => {
    const node = resolveNode(await listNodes(c), ref);
    const label = node.name ?? shortId(node.id);
    switch (action) {
      case 'admit':
        await c.write({ op: 'admitNode', nodeId: node.id });
        io.stderr.write(`node ${label} admitted: it gets new data now\n`);
        return;
      case 'drain':
        await c.write({ op: 'drainNode', nodeId: node.id });
        io.stderr.write(`node ${label} is draining: its copies are being made elsewhere; dfs nodes shows its chunks go to 0, then dfs node rm ${label}\n`);
        return;
      case 'rm':
        await c.write({ op: 'removeNode', nodeId: node.id, force: options.force === true });
        io.stderr.write(`node ${label} removed${options.force ? ' (forced)' : ''}\n`);
        return;
      case 'scrub':
        if (!options.now) throw new DfsError('ERR_USAGE', 'dfs node scrub needs --now (nodes scrub in the background anyway; --now re-hashes every chunk at once)');
        await c.leaderRequest({ type: 'scrubNode', nodeId: node.id });
        io.stderr.write(`node ${label} will re-hash every chunk now (a corrupt one is quarantined and copied again from a good one)\n`);
        return;
      default:
        throw new DfsError('ERR_USAGE', `dfs node takes start, admit, drain, rm or scrub, not "${action}"`);
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
