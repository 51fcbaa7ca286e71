import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { registerMasterMetrics } from '../../src/master/master-metrics.ts';
import { statusRoutes } from '../../src/master/status-page.ts';
import { DfsError } from '../../src/errors/index.ts';
import type { MasterStatus, NodeView } from '../../src/meta/index.ts';
import { createMetricsRegistry, metricsRoute, parseListenAddress, type RunningHttpServer, startHttpServer } from '../../src/metrics/index.ts';

const run = promisify(execFile);
/** Debian's chromium-headless-shell (CI installs it; see .ci/run). */
const CHROMIUM = ['/usr/bin/chromium-headless-shell', '/usr/bin/chromium'].find((p) => existsSync(p));

const servers: RunningHttpServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

function leaderStatus(): MasterStatus {
  return {
    name: 'm2',
    peerId: '12D3KooWLeader',
    addrs: ['/ip4/127.0.0.1/tcp/7002'],
    role: 'leader',
    term: 7,
    leaderId: '12D3KooWLeader',
    commitIndex: 120,
    appliedIndex: 118,
    lastIndex: 121,
    snapshotIndex: 0,
    followerLag: { '12D3KooWF1': 0, '12D3KooWF2': 4 },
    counts: { entries: 10, files: 8, nodes: 3 },
    uptimeMs: 60_000,
    raft: { electionsStarted: 2, becameLeader: 1, snapshotsSent: 0, snapshotsRestored: 0 },
    chunks: { total: 40, underReplicated: 3, missing: 1, repairing: 2, repaired: 17, copiesPerSecond: 1.5, ready: true },
  };
}

const NODES: NodeView[] = [
  { id: '12D3KooWN1', name: 'n1', addr: '/ip4/127.0.0.1/tcp/1', state: 'alive', capacityBytes: 4 * 2 ** 30, usedBytes: 2 ** 30, freeBytes: 3 * 2 ** 30, chunks: 12, heartbeatAgeMs: 400, repairsInFlight: 1 },
  { id: '12D3KooWN2', name: '<img src=x onerror=alert(1)>', addr: '/ip4/127.0.0.1/tcp/2', state: 'dead', capacityBytes: 2 ** 30, usedBytes: 0, freeBytes: 2 ** 30, chunks: 0, heartbeatAgeMs: 30_000, repairsInFlight: 0 },
];

async function serve(status: () => MasterStatus, nodes: NodeView[] | undefined): Promise<string> {
  const source = { status: async () => status(), nodes: async () => nodes };
  const registry = createMetricsRegistry({ role: 'master', name: 'm2' });
  registerMasterMetrics(registry, source);
  const server = await startHttpServer({ listen: '127.0.0.1:0', routes: { '/metrics': metricsRoute(registry), ...statusRoutes(source) } });
  servers.push(server);
  return `http://${server.address}`;
}

describe('a master\'s HTTP pages', () => {
  it('refuses what it does not serve: other methods, unknown paths, bad listen addresses', async () => {
    const base = await serve(leaderStatus, NODES);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST', body: 'x' })).status).toBe(405);
    expect(() => parseListenAddress('localhost')).toThrow(/HOST:PORT/);
    expect(() => parseListenAddress('1.2.3.4:99999')).toThrow(/HOST:PORT/);
    expect(parseListenAddress('[::1]:9464')).toEqual({ host: '::1', port: 9464 });
  });

  it('answers 503 with the reason when the status cannot be read', async () => {
    const base = await serve(() => {
      throw new DfsError('ERR_NOT_LEADER', 'raft not started');
    }, undefined);
    const res = await fetch(`${base}/status.json`);
    expect(res.status).toBe(503);
    expect(await res.text()).toMatch(/raft not started/);
  });

  it('never shows a stranger an internal error\'s message (it may name files)', async () => {
    const base = await serve(() => {
      throw new Error('IO error: /var/lib/dfs/m2/raft/LOCK: Resource temporarily unavailable');
    }, undefined);
    const res = await fetch(`${base}/status.json`);
    expect(res.status).toBe(503);
    const text = await res.text();
    expect(text).not.toMatch(/\/var\/lib|LOCK/);
    expect(text).toMatch(/internal error/);
  });

  it('serves /status.json without addresses or peer-reported fields it does not list', async () => {
    const base = await serve(leaderStatus, NODES);
    const text = await (await fetch(`${base}/status.json`)).text();
    expect(text).not.toMatch(/\/ip4\//);
    expect(text).not.toMatch(/"addrs?"/);
    expect(JSON.parse(text).nodes[0]).toEqual({ name: 'n1', id: '12D3KooWN1', state: 'alive', freeBytes: 3 * 2 ** 30, usedBytes: 2 ** 30, capacityBytes: 4 * 2 ** 30, chunks: 12, heartbeatAgeMs: 400, repairsInFlight: 1 });
  });

  it('serves Prometheus metrics: Raft, chunk health, repair queue, per-node space, process figures', async () => {
    const base = await serve(leaderStatus, NODES);
    const res = await fetch(`${base}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await res.text();
    expect(text).toMatch(/^dfs_raft_term\{[^}]*\} 7$/m);
    expect(text).toMatch(/^dfs_raft_apply_lag_entries\{[^}]*\} 2$/m);
    expect(text).toMatch(/^dfs_raft_follower_lag_entries\{follower="12D3KooWF2"[^}]*\} 4$/m);
    expect(text).toMatch(/^dfs_chunks_under_replicated\{[^}]*\} 3$/m);
    expect(text).toMatch(/^dfs_repair_in_flight\{[^}]*\} 2$/m);
    expect(text).toMatch(/^dfs_node_free_bytes\{node="n1"[^}]*\} 3221225472$/m);
    expect(text).toMatch(/^dfs_node_state\{node="n1",state="alive"[^}]*\} 1$/m);
    expect(text).toMatch(/^dfs_process_resident_memory_bytes\{role="master",process_name="m2"\} \d+/m);
  });

  it.skipIf(CHROMIUM === undefined)('renders the nodes table in a real browser (headless Chromium), with node names as text, never markup', async () => {
    const base = await serve(leaderStatus, NODES);
    const { stdout } = await run(CHROMIUM!, ['--headless', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=5000', '--dump-dom', `${base}/`], { timeout: 60_000 });
    expect(stdout).toMatch(/data-rendered="yes"/);
    const nodesTable = /<table id="nodes">([\s\S]*?)<\/table>/.exec(stdout)?.[1] ?? '';
    const rows = [...nodesTable.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((m) => [...m[1]!.matchAll(/<t[dh][^>]*>([\s\S]*?)<\/t[dh]>/g)].map((c) => c[1]));
    expect(rows[0]).toEqual(['node', 'state', 'free', 'used', 'chunks', 'last heard', 'repairs']);
    expect(rows[1]).toEqual(['n1', 'alive', '3.0 GiB', '1.0 GiB', '12', '0.4 s ago', '1']);
    // The hostile name shows as text (escaped in the DOM), and no <img> element exists.
    expect(rows[2]?.[0]).toBe('&lt;img src=x onerror=alert(1)&gt;');
    expect(stdout).not.toMatch(/<img/);
    expect(stdout).toMatch(/This master leads \(term 7\)/);
    expect(stdout).toMatch(/under-replicated<\/td><td class="n bad">3</);
  });
});
