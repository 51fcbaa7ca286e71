import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Blake3 } from '../../src/chunker/index.ts';
import type { MetaClient } from '../../src/client/index.ts';
import type { FileEntry, MasterStatus } from '../../src/meta/index.ts';
import { checkOperations } from '../support/linearizability.ts';
import { fsModel } from '../support/linearizability-models.ts';
import { type ContentCatalog, short } from './content.ts';
import { chunkIntact, chunkPath } from './disk.ts';
import type { Damage } from './faults.ts';
import { type History, modelOperations } from './history.ts';
import type { Monitor } from './monitor.ts';
import { indent, type Procs } from './procs.ts';
import type { Workload } from './workload.ts';

export interface CheckResult {
  readonly name: string;
  /** pass, fail, or warn (reported, not failing the run). */
  readonly verdict: 'pass' | 'fail' | 'warn';
  readonly detail: string;
}

export interface CheckContext {
  readonly procs: Procs;
  readonly meta: MetaClient;
  readonly monitor: Monitor;
  readonly workload: Workload;
  readonly history: History;
  readonly catalog: ContentCatalog;
  readonly groups: readonly (readonly string[])[];
  readonly blake3: Blake3;
  readonly replicationFactor: number;
  readonly damaged: readonly Damage[];
  /** When the checks must be done by (performance.now()). */
  readonly deadline: number;
  /** Bound on the linearizability search, all groups together. */
  readonly linearizabilityBudgetMs: number;
}

/** What the final read-back found, for the figures. */
export interface ReadBack {
  files: number;
  bytesVerified: number;
  /** Paths whose acknowledged content did not read back intact, and why. */
  lost: Array<{ path: string; why: string }>;
  /** Removed (or never written) files that are there after all. */
  cameBack: Array<{ path: string; why: string }>;
}

/**
 * The checks after the faults healed, in order: the masters agree (same applied index, same
 * state hash), every node is live, every chunk is at RF (by the leader, waiting a bounded
 * time for repair), every file reads back byte for byte, nothing unexpected is in the
 * namespace, the history is linearizable (final reads included), the copies on disk are
 * intact, no process died by itself, and no log has an error.
 */
export class Checks {
  readonly #c: CheckContext;
  readonly results: CheckResult[] = [];
  readonly readBack: ReadBack = { files: 0, bytesVerified: 0, lost: [], cameBack: [] };
  /** Final manifests, by path (what the disk audit looks at). */
  readonly #finalFiles = new Map<string, FileEntry>();
  repairWaitMs = 0;

  constructor(context: CheckContext) {
    this.#c = context;
  }

  #result(name: string, verdict: CheckResult['verdict'], detail: string): void {
    this.results.push({ name, verdict, detail });
    const mark = verdict === 'pass' ? 'ok  ' : verdict === 'warn' ? 'WARN' : 'FAIL';
    console.log(`[check] ${mark} ${name}: ${detail.includes('\n') ? `\n${indent(detail)}` : detail}`);
  }

  #left(capMs: number): number {
    return Math.max(1_000, Math.min(capMs, this.#c.deadline - performance.now()));
  }

  async converged(): Promise<void> {
    const bound = this.#left(20_000);
    const deadline = performance.now() + bound;
    let last: Array<{ name: string; status?: MasterStatus; error?: string }> = [];
    for (;;) {
      last = await this.#c.procs.statuses(this.#c.meta, true).catch(() => last);
      const up = last.map((s) => s.status).filter((s): s is MasterStatus => s !== undefined);
      const leaders = up.filter((s) => s.role === 'leader');
      if (up.length === last.length && up.length > 0 && leaders.length === 1 && new Set(up.map((s) => s.appliedIndex)).size === 1 && new Set(up.map((s) => s.stateHash)).size === 1) {
        return this.#result('masters agree', 'pass', `${up.length} masters at applied index ${up[0]!.appliedIndex}, state hash ${up[0]!.stateHash?.slice(0, 16)}, leader ${leaders[0]!.name} (term ${leaders[0]!.term})`);
      }
      if (performance.now() > deadline) {
        const table = last.map((s) => `${s.name}: ${s.status ? `${s.status.role} term ${s.status.term} applied ${s.status.appliedIndex} hash ${s.status.stateHash?.slice(0, 16)}` : s.error}`).join('\n');
        return this.#result('masters agree', 'fail', `not within ${(bound / 1000).toFixed(0)} s:\n${table}`);
      }
      await sleep(300);
    }
  }

  async nodesLive(): Promise<void> {
    const want = this.#c.procs.nodes.length;
    const bound = this.#left(15_000);
    const deadline = performance.now() + bound;
    for (;;) {
      await this.#c.monitor.sample();
      const live = this.#c.monitor.latest?.liveNodes ?? 0;
      if (live >= want) return this.#result('nodes live', 'pass', `the leader hears all ${want} storage nodes`);
      if (performance.now() > deadline) return this.#result('nodes live', 'fail', `the leader hears ${live} of ${want} storage nodes after ${(bound / 1000).toFixed(0)} s`);
      await sleep(500);
    }
  }

  async chunksAtRf(): Promise<void> {
    const bound = this.#left(40_000);
    const started = performance.now();
    for (;;) {
      await this.#c.monitor.sample();
      const c = this.#c.monitor.latest?.chunks;
      const waited = performance.now() - started;
      if (c && c.ready && c.underReplicated === 0 && c.missing === 0 && c.repairing === 0) {
        this.repairWaitMs = waited;
        return this.#result('chunks at RF (leader)', 'pass', `${c.total} referenced chunks, none under-replicated or missing (waited ${(waited / 1000).toFixed(1)} s; ${c.repaired} copies made by this leader)`);
      }
      if (waited > bound) {
        this.repairWaitMs = waited;
        if (!c) return this.#result('chunks at RF (leader)', 'fail', `the leader reports no chunk health (MasterStatus.chunks is missing)`);
        return this.#result(
          'chunks at RF (leader)',
          'fail',
          `after ${(waited / 1000).toFixed(0)} s: ${c.underReplicated} of ${c.total} chunks under-replicated, ${c.missing} missing, ${c.repairing} copies under way, ${c.repaired} made, ready ${c.ready} (repair has not finished: is its node half in place?)`,
        );
      }
      await sleep(500);
    }
  }

  /** Every path: a final stat and a final get, the bytes compared with the content the entry names. */
  async readBackAll(): Promise<void> {
    const { workload, catalog } = this.#c;
    const problems: string[] = [];
    for (const path of this.#c.groups.flat()) {
      const { record, entry } = await workload.stat('final', this.#c.meta, path, true);
      if (record.outcome !== 'ok') {
        problems.push(`${path}: stat failed: ${record.code} ${record.message}`);
        continue;
      }
      if (!entry) continue;
      if (entry.kind !== 'file') {
        this.readBack.cameBack.push({ path, why: 'a directory where only files were ever written' });
        continue;
      }
      this.#finalFiles.set(path, entry);
      this.readBack.files++;
      const content = catalog.get(entry.manifest.blake3);
      if (!content) {
        this.readBack.lost.push({ path, why: `its entry names content ${short(entry.manifest.blake3)}, which no put wrote` });
        continue;
      }
      const got = await workload.get('final', this.#c.meta, path, content);
      if (got.record.outcome !== 'ok') this.readBack.lost.push({ path, why: `unreadable: ${got.record.code}: ${got.record.message}` });
      else if (got.record.output === null) this.readBack.lost.push({ path, why: 'gone between the final stat and the final get' });
      else if (got.mismatch) this.readBack.lost.push({ path, why: got.mismatch });
      else this.readBack.bytesVerified += got.bytes;
    }
    const lost = this.readBack.lost.map((l) => `${l.path}: ${l.why}`);
    if (problems.length > 0 || lost.length > 0) this.#result('read-back', 'fail', [...problems, ...lost].join('\n'));
    else this.#result('read-back', 'pass', `${this.readBack.files} files read back byte for byte (${(this.readBack.bytesVerified / 2 ** 20).toFixed(1)} MiB)`);
    if (workload.badReads.length > 0) this.#result('reads during the run', 'fail', workload.badReads.slice(0, 10).join('\n'));
  }

  /** Nothing but the workload's own paths exists. */
  async namespace(): Promise<void> {
    const expected = new Set(this.#c.groups.flat());
    const groupDirs = new Set(this.#c.groups.map((g) => g[0]!.slice(0, g[0]!.lastIndexOf('/'))));
    const extra: string[] = [];
    try {
      for (const e of await this.#listAll('/')) if (e !== '/chaos') extra.push(e);
      for (const e of await this.#listAll('/chaos')) if (!groupDirs.has(e)) extra.push(e);
      for (const dir of groupDirs) for (const e of await this.#listAll(dir)) if (!expected.has(e)) extra.push(e);
    } catch (err) {
      return this.#result('namespace', 'fail', `listing failed: ${(err as Error).message}`);
    }
    for (const path of extra) this.readBack.cameBack.push({ path, why: 'a path the workload never wrote' });
    if (extra.length > 0) this.#result('namespace', 'fail', `unexpected entries: ${extra.join(', ')}`);
    else this.#result('namespace', 'pass', `only the workload's ${expected.size} paths and their directories`);
  }

  async #listAll(dir: string): Promise<string[]> {
    const out: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.#c.meta.list(dir, { ...(after !== undefined ? { after } : {}), limit: 1000 });
      out.push(...page.entries.map((e) => e.path));
      if (page.next === undefined) return out;
      after = page.next;
    }
  }

  /**
   * The metadata history, final reads included, against the file-namespace model, group by group
   * (renames stay within a group, so groups are independent). Where a group has no
   * linearization, each path's final reads are dropped in turn to find the path whose final
   * state no order of the operations explains: its acknowledged content is lost, or a removed
   * file came back.
   */
  linearizable(): void {
    const all = modelOperations(this.#c.history.ops);
    const verdicts: string[] = [];
    let unknown = 0;
    let illegal = 0;
    let steps = 0;
    for (const group of this.#c.groups) {
      const paths = new Set(group);
      const ops = all.filter((o) => paths.has(o.record.path));
      const budget = { timeoutMs: this.#left(this.#c.linearizabilityBudgetMs) / this.#c.groups.length };
      const r = checkOperations(fsModel, ops, budget);
      steps += r.steps;
      if (r.result === 'ok') continue;
      if (r.result === 'unknown') {
        unknown++;
        verdicts.push(`${group[0]!.slice(0, -2)}: unknown (${r.reason})`);
        continue;
      }
      illegal++;
      const withoutFinals = ops.filter((o) => !o.record.final);
      if (checkOperations(fsModel, withoutFinals, budget).result === 'illegal') {
        verdicts.push(`${group[0]!.slice(0, -2)} (${ops.length} operations): not linearizable during the run, before any final read\n${indent(r.hint)}`);
        continue;
      }
      verdicts.push(`${group[0]!.slice(0, -2)} (${ops.length} operations): the final reads are explained by no order of the history\n${indent(r.hint)}`);
      // The paths whose final reads no order explains: one at a time first, then cumulatively.
      const finalsOf = (path: string) => ops.filter((o) => o.record.final && o.record.path === path);
      const dropping = (paths: ReadonlySet<string>) => ops.filter((o) => !(o.record.final && paths.has(o.record.path)));
      let culprits = group.filter((path) => finalsOf(path).length > 0 && checkOperations(fsModel, dropping(new Set([path])), budget).result === 'ok');
      if (culprits.length === 0) {
        const dropped = new Set<string>();
        for (const path of group) {
          if (finalsOf(path).length === 0) continue;
          dropped.add(path);
          if (checkOperations(fsModel, dropping(dropped), budget).result === 'ok') break;
        }
        culprits = [...dropped];
      }
      // Each culprit alone, the others' final reads left out: would "absent" have been right?
      const base = dropping(new Set(culprits));
      for (const path of culprits) {
        const final = finalsOf(path);
        const seen = final[0]?.output ?? null;
        const asAbsent = [...base, ...final.slice(0, 1).map((o) => ({ ...o, output: null }))];
        if (seen !== null && checkOperations(fsModel, asAbsent, budget).result === 'ok') {
          this.readBack.cameBack.push({ path, why: `reads ${seen} at the end, where the history says no file is (removed, or never written)` });
        } else if (!this.readBack.lost.some((l) => l.path === path)) {
          this.readBack.lost.push({ path, why: `reads ${seen ?? 'absent'} at the end, which no order of the acknowledged operations explains` });
        }
      }
    }
    const count = all.length;
    if (illegal > 0) this.#result('linearizable', 'fail', verdicts.join('\n'));
    else if (unknown > 0) this.#result('linearizable', 'warn', `${count} operations; ${unknown} group(s) not decided within the budget:\n${verdicts.join('\n')}`);
    else this.#result('linearizable', 'pass', `${count} operations (${all.filter((o) => o.output === undefined).length} indeterminate) in ${this.#c.groups.length} groups, ${steps} search steps`);
  }

  /** The copies on disk of every chunk the final files name: at least RF intact ones each. */
  async diskAudit(): Promise<void> {
    const { procs, blake3 } = this.#c;
    const rf = this.#c.replicationFactor;
    const ids = new Set<string>();
    for (const entry of this.#finalFiles.values()) for (const [id] of entry.manifest.chunks) ids.add(id);
    const damagedCopy = new Set(this.#c.damaged.map((d) => `${d.node} ${d.id}`));
    const short: string[] = [];
    const explained: string[] = [];
    const none: string[] = [];
    for (const id of ids) {
      let intact = 0;
      const bad: string[] = [];
      for (const node of procs.nodes) {
        if (await chunkIntact(chunkPath(procs.dirOf(node), id), id, blake3)) intact++;
        else if (damagedCopy.has(`${node} ${id}`)) bad.push(node);
      }
      if (intact === 0) none.push(id);
      else if (intact < rf) (intact + bad.length >= rf ? explained : short).push(`${id.slice(0, 16)}: ${intact} intact${bad.length ? ` (damaged by the harness on ${bad.join(', ')}, not yet repaired)` : ''}`);
    }
    if (none.length > 0 || short.length > 0) {
      this.#result('copies on disk', 'fail', [...none.map((id) => `${id.slice(0, 16)}: no intact copy on any node`), ...short].join('\n'));
    } else if (explained.length > 0) {
      this.#result('copies on disk', 'warn', `${ids.size} chunks; ${explained.length} below RF only by copies the harness damaged that nothing has found yet:\n${explained.join('\n')}`);
    } else this.#result('copies on disk', 'pass', `${ids.size} chunks of the final files, each with at least ${rf} intact copies`);
  }

  exits(): void {
    const { procs } = this.#c;
    const lines = [
      ...procs.unexpected.map((u) => `${u.name} exited by itself at ${(u.atMs / 1000).toFixed(1)} s; its log ends:\n${indent(u.logTail)}`),
      ...procs.restartFailures,
    ];
    if (lines.length > 0) this.#result('no process died by itself', 'fail', lines.join('\n'));
    else this.#result('no process died by itself', 'pass', `${procs.counts.kills} kills and ${procs.counts.pauses} pauses, all by the harness; ${procs.counts.restarts} restarts`);
  }

  /** No error or fatal line, no unhandled rejection, uncaught exception or stack trace, in any process log. */
  async logs(): Promise<void> {
    const found = new Map<string, { count: number; where: string }>();
    const add = (key: string, where: string) => {
      const f = found.get(key);
      if (f) f.count++;
      else found.set(key, { count: 1, where });
    };
    for (const name of this.#c.procs.names) {
      const text = await readFile(join(this.#c.procs.dirOf(name), 'process.log'), 'utf8').catch(() => '');
      for (const line of text.split('\n')) {
        if (line.startsWith('{')) {
          try {
            const rec = JSON.parse(line) as { level?: number; msg?: string; err?: unknown; component?: string };
            if ((rec.level ?? 0) >= 50) add(`level ${rec.level}${rec.component ? ` ${rec.component}` : ''}: ${rec.msg} ${rec.err !== undefined ? JSON.stringify(rec.err).slice(0, 200) : ''}`.trim(), name);
            continue;
          } catch {
            // not JSON after all: look at it as text
          }
        }
        if (/unhandled|uncaught|internal error/i.test(line)) add(line.slice(0, 300), name);
        else if (/^\s+at .+(:\d+:\d+\)?|\(native\)|\(<anonymous>\))$/.test(line)) add(`stack trace line: ${line.trim().slice(0, 200)}`, name);
      }
    }
    if (found.size === 0) return this.#result('process logs', 'pass', `no error, fatal, unhandled or uncaught line and no stack trace in ${this.#c.procs.names.length} logs`);
    const lines = [...found].map(([key, f]) => `${f.count}x (first in ${f.where}) ${key}`);
    this.#result('process logs', 'fail', lines.slice(0, 30).join('\n') + (lines.length > 30 ? `\n... ${lines.length - 30} more` : ''));
  }

  get failed(): boolean {
    return this.results.some((r) => r.verdict === 'fail');
  }
}
