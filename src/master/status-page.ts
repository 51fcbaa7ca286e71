import type { HttpRoute } from '../metrics/index.ts';
import type { MasterMetricsSource } from './master-metrics.ts';

/**
 * A master's status page (`/`): the masters' Raft view, the storage nodes, chunk health and repair
 * progress, refreshed every two seconds from `/status.json`. The followers' page says who leads
 * (node and chunk figures live on the leader).
 *
 * The page is one static document whose script renders the JSON with textContent only (never
 * innerHTML), so nothing a node reports (its name) can inject markup.
 */
export interface StatusPageData {
  readonly master: {
    readonly name: string;
    readonly peerId: string;
    readonly role: string;
    readonly term: number;
    readonly leaderId: string | null;
    readonly commitIndex: number;
    readonly appliedIndex: number;
    readonly uptimeMs: number;
    readonly followerLag: Readonly<Record<string, number>>;
  };
  readonly chunks: Readonly<Record<string, number | boolean>> | null;
  readonly nodes: ReadonlyArray<{
    readonly name: string;
    readonly id: string;
    readonly state: string;
    readonly freeBytes: number;
    readonly usedBytes: number;
    readonly capacityBytes: number;
    readonly chunks: number;
    readonly heartbeatAgeMs: number | null;
    readonly repairsInFlight: number;
  }> | null;
}

export async function statusPageData(source: MasterMetricsSource): Promise<StatusPageData> {
  const [s, nodes] = await Promise.all([source.status(), source.nodes()]);
  return {
    master: { name: s.name, peerId: s.peerId, role: s.role, term: s.term, leaderId: s.leaderId, commitIndex: s.commitIndex, appliedIndex: s.appliedIndex, uptimeMs: s.uptimeMs, followerLag: s.followerLag ?? {} },
    chunks: s.chunks ? { ...s.chunks } : null,
    nodes: nodes
      ? nodes.map((n) => ({ name: n.name ?? n.id.slice(-8), id: n.id, state: n.state, freeBytes: n.freeBytes, usedBytes: n.usedBytes, capacityBytes: n.capacityBytes, chunks: n.chunks, heartbeatAgeMs: n.heartbeatAgeMs, repairsInFlight: n.repairsInFlight }))
      : null,
  };
}

/** The routes a master serves besides /metrics. */
export function statusRoutes(source: MasterMetricsSource): Record<string, HttpRoute> {
  return {
    '/': { contentType: 'text/html; charset=utf-8', body: () => STATUS_PAGE_HTML },
    '/status.json': { contentType: 'application/json', body: async () => JSON.stringify(await statusPageData(source)) },
  };
}

const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dfs master</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
  table { border-collapse: collapse; } th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: left; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  .bad { color: #b00; font-weight: 600; } .ok { color: #070; } #error { color: #b00; }
</style>
</head>
<body>
<h1>dfs master <span id="name"></span></h1>
<p id="summary"></p>
<p id="error"></p>
<h2>Raft</h2>
<table id="raft"><tbody></tbody></table>
<h2>Chunk health</h2>
<p id="chunks-note"></p>
<table id="chunks"><tbody></tbody></table>
<h2>Storage nodes</h2>
<p id="nodes-note"></p>
<table id="nodes">
  <thead><tr><th>node</th><th>state</th><th>free</th><th>used</th><th>chunks</th><th>last heard</th><th>repairs</th></tr></thead>
  <tbody></tbody>
</table>
<script>
const $ = (id) => document.getElementById(id);
function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
}
function row(tbody, cells) {
  const tr = document.createElement('tr');
  for (const c of cells) {
    const td = document.createElement('td');
    const [text, cls] = Array.isArray(c) ? c : [c, typeof c === 'number' ? 'n' : ''];
    td.textContent = String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  tbody.appendChild(tr);
}
function render(d) {
  const m = d.master;
  $('name').textContent = m.name;
  $('summary').textContent = m.role === 'leader' ? 'This master leads (term ' + m.term + ').' : 'This master is a ' + m.role + '; the leader is ' + (m.leaderId || 'not known yet') + '.';
  const raft = $('raft').tBodies[0];
  raft.replaceChildren();
  row(raft, ['role', m.role]);
  row(raft, ['term', m.term]);
  row(raft, ['leader', m.leaderId || '-']);
  row(raft, ['commit index', m.commitIndex]);
  row(raft, ['applied index', m.appliedIndex]);
  for (const [f, lag] of Object.entries(m.followerLag)) row(raft, ['lag of ' + f, lag]);
  const chunks = $('chunks').tBodies[0];
  chunks.replaceChildren();
  $('chunks-note').textContent = d.chunks ? '' : 'Shown on the leader.';
  if (d.chunks) {
    const c = d.chunks;
    row(chunks, ['referenced', c.total]);
    row(chunks, ['under-replicated', [c.underReplicated, c.underReplicated > 0 ? 'n bad' : 'n ok']]);
    row(chunks, ['missing', [c.missing, c.missing > 0 ? 'n bad' : 'n ok']]);
    row(chunks, ['repairing now', c.repairing]);
    row(chunks, ['copies made', c.repaired]);
    row(chunks, ['copies per second', c.copiesPerSecond]);
  }
  const nodes = $('nodes').tBodies[0];
  nodes.replaceChildren();
  $('nodes-note').textContent = d.nodes ? d.nodes.length + ' storage nodes' : 'Shown on the leader.';
  for (const n of d.nodes || []) {
    row(nodes, [n.name, [n.state, n.state === 'alive' ? 'ok' : 'bad'], [bytes(n.freeBytes), 'n'], [bytes(n.usedBytes), 'n'], n.chunks, n.heartbeatAgeMs === null ? '-' : (n.heartbeatAgeMs / 1000).toFixed(1) + ' s ago', n.repairsInFlight]);
  }
  document.body.dataset.rendered = 'yes';
}
async function refresh() {
  try {
    const res = await fetch('/status.json', { cache: 'no-store' });
    if (!res.ok) throw new Error(await res.text());
    render(await res.json());
    $('error').textContent = '';
  } catch (e) {
    $('error').textContent = 'cannot read the status: ' + e.message;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
`;
