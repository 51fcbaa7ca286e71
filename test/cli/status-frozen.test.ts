import { recordUnhandledRejections } from '../support/unhandled.ts';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EXIT, main } from '../../src/cli/index.ts';
import type { CliIO } from '../../src/cli/index.ts';
import { LocalCluster } from '../../src/cluster/index.ts';

/**
 * `dfs status` while one master is frozen (SIGSTOP): the kernel still accepts its connections,
 * nothing answers on them, so every call to it ends in a timeout. The command must print its
 * table (the frozen master a row of its own) or one line of error, never a stack trace, and
 * leave no rejection unhandled, both in-process and as the real binary.
 */
const BIN = new URL('../../bin/dfs.js', import.meta.url).pathname;

let dir: string;
let cluster: LocalCluster;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dfs-test-'));
  cluster = new LocalCluster({ dir, masters: 3 });
  await cluster.start();
});

afterAll(async () => {
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const unhandledNow = recordUnhandledRejections();
// main() sets process.exitCode, as the bin relies on: the test run must not inherit it.
afterEach(() => {
  process.exitCode = 0;
});

interface Outcome {
  readonly how: string;
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function inProcess(args: string[]): Promise<Outcome> {
  let stdout = '';
  let stderr = '';
  const io: CliIO = {
    stdout: { write: (t: string) => (stdout += t), isTTY: false },
    stderr: { write: (t: string) => (stderr += t), isTTY: false },
    stdin: Readable.from([]),
    env: {},
  };
  const code = await main(args, io);
  return { how: `in-process dfs ${args.join(' ')}`, code, stdout, stderr };
}

function child(args: string[]): Promise<Outcome> {
  const { DFS_DEBUG: _debug, ...env } = process.env;
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 30_000, env }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ how: `bin/dfs.js ${args.join(' ')}`, code, stdout, stderr });
    });
  });
}

/** `dfs status` and `dfs status --json`, in-process and as child processes, all at once. */
async function statusEverywhere(): Promise<{ tables: Outcome[]; jsons: Outcome[] }> {
  const table = ['status', '--cluster', dir];
  const json = ['status', '--json', '--cluster', dir];
  const [a, b, c, d] = await Promise.all([inProcess(table), child(table), inProcess(json), child(json)]);
  return { tables: [a!, b!], jsons: [c!, d!] };
}

/** Runs `fn` with master `name` stopped (SIGSTOP); always resumes it. */
async function whileFrozen<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const pid = cluster.pids()[name];
  if (pid === undefined) throw new Error(`${name} is not running`);
  process.kill(pid, 'SIGSTOP');
  try {
    return await fn();
  } finally {
    process.kill(pid, 'SIGCONT');
  }
}

function master(name: string) {
  const m = cluster.spec.masters.find((x) => x.name === name);
  if (!m) throw new Error(`no master ${name}`);
  return m;
}

/** The leader, once all three masters answer (after a resume, the resumed one catches up). */
async function healthyLeader(): Promise<string> {
  return cluster.withClient(async (c) => {
    for (let i = 0; ; i++) {
      const all = await c.statusAll();
      const leader = all.find((s) => s.status?.role === 'leader')?.status;
      if (leader && all.every((s) => s.status)) return leader.name;
      if (i > 100) throw new Error(`cluster not healthy: ${JSON.stringify(all)}`);
      await sleep(100);
    }
  });
}

/** Everything a status table must show with `frozen` stopped; returns the leader line's name. */
function expectTable(o: Outcome, frozen: string, electing = false): string | undefined {
  expect(o.stderr, o.how).not.toMatch(/^\s+at /m); // no stack trace
  expect(o.stderr, o.how).not.toMatch(/internal error|ERR_INTERNAL/);
  const lines = o.stdout.split('\n');
  expect(lines[0], o.how).toMatch(/^MASTER\s+ROLE\s+TERM\s+COMMIT\s+APPLIED\s+LAG\s+ERROR\s+ADDRESS$/);
  const frozenRow = lines.find((l) => l.endsWith(master(frozen).addr));
  expect(frozenRow, o.how).toMatch(/^\?\s+unreachable\s+-\s+-\s+-\s+-\s+ERR_TIMEOUT: /);
  for (const m of cluster.spec.masters.filter((x) => x.name !== frozen)) {
    // While the others elect (the leader just froze) one may be a pre-candidate; never else.
    const roles = electing ? 'leader|follower|preCandidate|candidate' : 'leader|follower|candidate';
    expect(lines.find((l) => l.endsWith(m.addr)), o.how).toMatch(new RegExp(`^${m.name}\\s+(${roles})\\s+\\d+`));
  }
  return /^leader (m\d)/m.exec(o.stdout)?.[1];
}

function expectJson(o: Outcome, frozen: string): Array<{ addr: string; code?: string; error?: string; status?: { name: string; role: string } }> {
  expect(o.stderr, o.how).not.toMatch(/^\s+at /m);
  const all = (JSON.parse(o.stdout) as { masters: Array<{ addr: string; code?: string; error?: string; status?: { name: string; role: string } }> }).masters;
  expect(all.map((a) => a.addr), o.how).toEqual(cluster.masterAddrs);
  const entry = all.find((a) => a.addr === master(frozen).addr)!;
  expect(entry, o.how).toMatchObject({ code: 'ERR_TIMEOUT', error: expect.stringMatching(/^ERR_TIMEOUT: /) });
  expect(entry.status, o.how).toBeUndefined();
  return all;
}

/** A settled status with a leader: exit 0, a table, the leader line; --json alike. */
function expectHealthyStatus(r: { tables: Outcome[]; jsons: Outcome[] }, frozen: string, leader: string): void {
  for (const o of r.tables) {
    expect([o.code, o.stderr], o.how).toEqual([EXIT.ok, '']);
    expect(expectTable(o, frozen), o.how).toBe(leader);
  }
  for (const o of r.jsons) {
    expect([o.code, o.stderr], o.how).toEqual([EXIT.ok, '']);
    const all = expectJson(o, frozen);
    expect(all.find((a) => a.status?.role === 'leader')?.status?.name, o.how).toBe(leader);
  }
}

async function strayRejections(): Promise<string[]> {
  await new Promise((ok) => setImmediate(ok));
  return unhandledNow().map((r) => (r instanceof Error ? r.message : String(r)));
}

describe('dfs status with one master frozen (SIGSTOP)', () => {
  it('a follower: exit 0, the table with the frozen follower as an unreachable row (ERR_TIMEOUT), --json marks it', async () => {
    const leader = await healthyLeader();
    const follower = cluster.spec.masters.map((m) => m.name).find((n) => n !== leader)!;
    const r = await whileFrozen(follower, statusEverywhere);
    expectHealthyStatus(r, follower, leader);
    expect(await strayRejections()).toEqual([]);
  });

  it('the leader: the table (and a one-line ERR_NO_QUORUM until a new leader is elected), then exit 0 with the new leader', async () => {
    const leader = await healthyLeader();
    const others = cluster.spec.masters.filter((m) => m.name !== leader);
    await whileFrozen(leader, async () => {
      // At once: the others may not have noticed yet. Either way a table, and at most one line
      // of error: no leader among those answering.
      const early = await Promise.all([inProcess(['status', '--cluster', dir]), child(['status', '--cluster', dir])]);
      for (const o of early) {
        const shown = expectTable(o, leader, true);
        if (o.code === EXIT.ok) {
          expect(o.stderr, o.how).toBe('');
          expect(others.map((m) => m.name), o.how).toContain(shown);
        } else {
          expect(o.code, o.how).toBe(EXIT.failure);
          expect(o.stderr, o.how).toMatch(/^dfs: no leader: [^\n]* \[ERR_NO_QUORUM\]\n$/);
        }
      }
      // Once the other two elected a leader (asked of them alone): exit 0 and that leader.
      const newLeader = await cluster.withClient((c) => c.waitForLeader(20_000), { masters: others.map((m) => m.addr) });
      expect(newLeader.name).not.toBe(leader);
      expectHealthyStatus(await statusEverywhere(), leader, newLeader.name);
    });
    expect(await strayRejections()).toEqual([]);
    await healthyLeader(); // the old leader, resumed, rejoins
  });
});
