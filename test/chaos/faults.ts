import { setTimeout as sleep } from 'node:timers/promises';
import type { MetaClient } from '../../src/client/index.ts';
import type { ContentCatalog } from './content.ts';
import { chunkFiles, chunkPath, corruptChunkFile, deleteChunkFile, type SmallDisk } from './disk.ts';
import type { Cut, Firewall } from './firewall.ts';
import type { History } from './history.ts';
import type { Monitor } from './monitor.ts';
import type { Procs } from './procs.ts';
import { describeStep, type FaultStep, type Lane, requirementOf } from './schedule.ts';
import type { Workload } from './workload.ts';

export interface FaultContext {
  readonly procs: Procs;
  readonly firewall: Firewall | undefined;
  readonly smallDisk: SmallDisk | undefined;
  readonly monitor: Monitor;
  readonly workload: Workload;
  readonly catalog: ContentCatalog;
  readonly history: History;
  /** A metadata client of the harness's own (leader lookups). */
  readonly meta: MetaClient;
  readonly groups: readonly (readonly string[])[];
  readonly deadAfterMs: number;
  /** Where the load phase started, on the history's clock. */
  readonly loadStartMs: number;
}

export interface Damage {
  readonly node: string;
  readonly id: string;
  readonly how: 'corrupted' | 'deleted';
  readonly atMs: number;
}

/**
 * Runs a schedule in real time: each lane one fault after the other, each fault injected, held,
 * then healed. stop() cuts every hold short, so each lane heals what it did and ends.
 */
export class FaultRunner {
  readonly #c: FaultContext;
  readonly #stop = new AbortController();
  readonly injected: Array<{ step: FaultStep; detail: string }> = [];
  readonly skipped: Array<{ step: FaultStep; reason: string }> = [];
  /** Things a fault could not do as planned (no repair seen, a put that ended first...). */
  readonly notes: string[] = [];
  readonly damaged: Damage[] = [];

  constructor(context: FaultContext) {
    this.#c = context;
  }

  get stopping(): boolean {
    return this.#stop.signal.aborted;
  }

  run(steps: readonly FaultStep[]): Promise<void> {
    const lanes: Lane[] = ['masters', 'nodes'];
    return Promise.all(lanes.map((lane) => this.#lane(steps.filter((s) => s.lane === lane)))).then(() => {});
  }

  /** Ends the schedule: holds end now, every lane heals its fault and returns. */
  stop(): void {
    this.#stop.abort();
  }

  async #lane(steps: readonly FaultStep[]): Promise<void> {
    for (const step of steps) {
      await this.#wait(step.atMs - (this.#c.history.now() - this.#c.loadStartMs));
      if (this.stopping) return;
      const needs = requirementOf(step.kind);
      if ((needs === 'firewall' && !this.#c.firewall) || (needs === 'small disk' && !this.#c.smallDisk)) {
        this.#skip(step, `needs a ${needs}`);
        continue;
      }
      try {
        await this.#execute(step);
      } catch (err) {
        this.notes.push(`${describeStep(step)} failed in the harness: ${(err as Error).stack ?? err}`);
        console.log(`[chaos] ${describeStep(step)}: harness error: ${(err as Error).message}`);
      }
    }
  }

  /** Sleeps up to `ms`; returns early when the run stops. */
  async #wait(ms: number): Promise<void> {
    if (ms <= 0 || this.stopping) return;
    await sleep(ms, undefined, { signal: this.#stop.signal }).catch(() => {});
  }

  #at(): string {
    return `${((this.#c.history.now() - this.#c.loadStartMs) / 1000).toFixed(1).padStart(6)} s`;
  }

  #inject(step: FaultStep, detail: string): void {
    this.injected.push({ step, detail });
    this.#c.history.event('fault', { id: step.id, lane: step.lane, kind: step.kind, phase: 'inject', detail });
    console.log(`[chaos] ${this.#at()}  #${step.id} ${step.kind}: ${detail}${step.holdMs > 0 ? ` (for ${(step.holdMs / 1000).toFixed(1)} s)` : ''}`);
  }

  #healed(step: FaultStep, detail: string): void {
    this.#c.history.event('fault', { id: step.id, lane: step.lane, kind: step.kind, phase: 'heal', detail });
    console.log(`[chaos] ${this.#at()}  #${step.id} healed: ${detail}`);
  }

  #skip(step: FaultStep, reason: string): void {
    this.skipped.push({ step, reason });
    this.#c.history.event('fault', { id: step.id, lane: step.lane, kind: step.kind, phase: 'skip', reason });
    console.log(`[chaos] ${this.#at()}  #${step.id} ${step.kind} skipped: ${reason}`);
  }

  #note(step: FaultStep, text: string): void {
    const line = `#${step.id} ${step.kind}: ${text}`;
    this.notes.push(line);
    this.#c.history.event('note', { id: step.id, text });
    console.log(`[chaos] ${this.#at()}  ${line}`);
  }

  /** The leader now (waiting up to 5 s for one); undefined if none is elected. */
  async #leader(): Promise<string | undefined> {
    const deadline = performance.now() + 5_000;
    for (;;) {
      const leader = await this.#c.procs.leader(this.#c.meta).catch(() => undefined);
      if (leader || performance.now() > deadline || this.stopping) return leader;
      await sleep(200);
    }
  }

  /** The master the step is aimed at: the leader, or a follower; undefined (and a skip) if no leader. */
  async #master(step: FaultStep, role: 'leader' | 'follower'): Promise<string | undefined> {
    const leader = await this.#leader();
    if (!leader) {
      this.#skip(step, 'no leader to aim at');
      return undefined;
    }
    if (role === 'leader') return leader;
    const followers = this.#c.procs.masters.filter((m) => m !== leader);
    return followers[step.pick % followers.length];
  }

  async #execute(step: FaultStep): Promise<void> {
    const { procs } = this.#c;
    switch (step.kind) {
      case 'kill-leader':
      case 'kill-follower': {
        const m = await this.#master(step, step.kind === 'kill-leader' ? 'leader' : 'follower');
        if (!m) return;
        this.#inject(step, `SIGKILL ${m}`);
        await procs.kill(m);
        await this.#wait(step.holdMs);
        await procs.restart(m);
        return this.#healed(step, `${m} restarted`);
      }
      case 'pause-leader':
      case 'pause-follower': {
        const m = await this.#master(step, step.kind === 'pause-leader' ? 'leader' : 'follower');
        if (!m) return;
        this.#inject(step, `SIGSTOP ${m}`);
        procs.pause(m);
        await this.#wait(step.holdMs);
        procs.resume(m);
        return this.#healed(step, `SIGCONT ${m}`);
      }
      case 'isolate-leader':
      case 'isolate-follower':
      case 'oneway-leader-out':
      case 'oneway-leader-in':
      case 'split-leader-minority': {
        const m = await this.#master(step, step.kind === 'isolate-follower' ? 'follower' : 'leader');
        if (!m) return;
        const others = procs.masters.filter((x) => x !== m);
        let cuts: Cut[];
        let detail: string;
        if (step.kind === 'isolate-leader') {
          cuts = both([m], [...others, ...procs.nodes]);
          detail = `${m} (leader) cut off from the other masters and every node`;
        } else if (step.kind === 'isolate-follower') {
          cuts = both([m], others);
          detail = `${m} (follower) cut off from the other masters`;
        } else if (step.kind === 'oneway-leader-out') {
          cuts = others.map((o) => ({ from: m, to: o }));
          detail = `${m} (leader) → ${others.join(', ')} dropped; the other way open`;
        } else if (step.kind === 'oneway-leader-in') {
          cuts = others.map((o) => ({ from: o, to: m }));
          detail = `${others.join(', ')} → ${m} (leader) dropped; the other way open`;
        } else {
          const start = step.pick % procs.nodes.length;
          const minorityNodes = [procs.nodes[start]!, procs.nodes[(start + 1) % procs.nodes.length]!];
          const a = [m, ...minorityNodes];
          cuts = both(a, procs.names.filter((x) => !a.includes(x)));
          detail = `{${a.join(', ')}} | {${procs.names.filter((x) => !a.includes(x)).join(', ')}} (the old leader in the minority)`;
        }
        return this.#partition(step, cuts, detail);
      }
      case 'kill-node': {
        const [n] = step.nodes;
        this.#inject(step, `SIGKILL ${n}`);
        await procs.kill(n!);
        await this.#wait(step.holdMs);
        await procs.restart(n!);
        return this.#healed(step, `${n} restarted`);
      }
      case 'kill-two-nodes': {
        this.#inject(step, `SIGKILL ${step.nodes.join(' and ')} at once`);
        await Promise.all(step.nodes.map((n) => procs.kill(n)));
        await this.#wait(step.holdMs);
        await Promise.all(step.nodes.map((n) => procs.restart(n)));
        this.#healed(step, `${step.nodes.join(' and ')} restarted`);
        return this.#waitForRepair(step);
      }
      case 'kill-mid-put':
        return this.#killMidPut(step);
      case 'kill-during-repair':
        return this.#killDuringRepair(step);
      case 'pause-node': {
        const [n] = step.nodes;
        this.#inject(step, `SIGSTOP ${n}`);
        procs.pause(n!);
        await this.#wait(step.holdMs);
        procs.resume(n!);
        return this.#healed(step, `SIGCONT ${n}`);
      }
      case 'corrupt-chunk':
      case 'delete-chunk':
        return this.#damage(step);
      case 'fill-disk': {
        const disk = this.#c.smallDisk!;
        const leave = step.pick % (4 << 20);
        const written = await disk.fill(leave);
        this.#inject(step, `${step.nodes[0]}'s disk filled: ${mib(written)} written, ${mib(await disk.freeBytes())} left`);
        await this.#wait(step.holdMs);
        await disk.free();
        return this.#healed(step, `${step.nodes[0]}'s disk freed (${mib(await disk.freeBytes())} free)`);
      }
      case 'isolate-node': {
        const [n] = step.nodes;
        return this.#partition(step, both([n!], procs.masters), `${n} cut off from every master (nodes and clients still reach it)`);
      }
      case 'oneway-node-out': {
        const [n] = step.nodes;
        return this.#partition(step, procs.masters.map((m) => ({ from: n!, to: m })), `${n} → masters dropped (its heartbeats are lost); the other way open`);
      }
      case 'split-nodes': {
        const rest = procs.nodes.filter((x) => !step.nodes.includes(x));
        return this.#partition(step, both([...step.nodes], rest), `{${step.nodes.join(', ')}} | {${rest.join(', ')}} among the nodes (masters reach all)`);
      }
    }
  }

  async #partition(step: FaultStep, cuts: Cut[], detail: string): Promise<void> {
    const fw = this.#c.firewall!;
    await fw.cut(`#${step.id}`, cuts);
    this.#inject(step, detail);
    await this.#wait(step.holdMs);
    await fw.heal(`#${step.id}`);
    this.#healed(step, 'partition removed');
  }

  /** Starts a put of a multi-chunk file and kills a node of one of its pipelines while it runs. */
  async #killMidPut(step: FaultStep): Promise<void> {
    const { procs, workload } = this.#c;
    const group = this.#c.groups[step.pick % this.#c.groups.length]!;
    const path = group[(step.pick >>> 4) % group.length]!;
    const content = this.#c.catalog.make([[step.pick, (6 << 20) + ((step.pick >>> 8) % (6 << 20))]]);
    const atBatch = 1 + ((step.pick >>> 12) % 2);
    const position = (step.pick >>> 16) % 3;
    let batches = 0;
    let victim: string | undefined;
    let killing: Promise<void> | undefined;
    const meta = workload.meta();
    const put = workload.put('fault-put', meta, path, content, false, (pipelines) => {
      if (killing || pipelines.length === 0 || ++batches < atBatch) return;
      const addr = pipelines[0]![Math.min(position, pipelines[0]!.length - 1)]!;
      const port = Number(/\/tcp\/(\d+)/.exec(addr)?.[1]);
      victim = procs.nodes.find((n) => procs.portOf(n) === port);
      if (!victim) return;
      this.#inject(step, `SIGKILL ${victim}, node ${position + 1} of the pipeline of a chunk of a put of ${mib(content.size)} to ${path} (placement batch ${batches})`);
      killing = sleep((step.pick >>> 24) % 40).then(() => procs.kill(victim!));
    });
    const record = await put;
    meta.close();
    if (!killing) {
      victim = step.nodes[0]!;
      this.#inject(step, `SIGKILL ${victim} (the put of ${mib(content.size)} to ${path} ended before placement batch ${atBatch}: ${record.outcome})`);
      killing = procs.kill(victim);
    }
    await killing;
    this.#c.history.event('note', { id: step.id, text: `the put ended: ${record.outcome}${record.code ? ` ${record.code}` : ''}` });
    await this.#wait(step.holdMs);
    await procs.restart(victim!);
    this.#healed(step, `${victim} restarted; the put ended ${record.outcome}${record.code ? ` (${record.code})` : ''}`);
  }

  /**
   * Kills a node, waits until the leader has declared it dead and copies are under way, then
   * kills a second node: one making or receiving copies if the leader names one (else the
   * scheduled one). Both come back after the hold; the lane then waits for repair.
   */
  async #killDuringRepair(step: FaultStep): Promise<void> {
    const { procs, meta } = this.#c;
    const a = step.nodes[0]!;
    this.#inject(step, `SIGKILL ${a}; a second node dies once repair is under way`);
    await procs.kill(a);
    const boundMs = this.#c.deadAfterMs + 15_000;
    let busy: string | undefined;
    const seen = await this.#until(async () => {
      const views = await procs.nodeViews(meta).catch(() => undefined);
      if (!views || views.get(a)?.state !== 'dead') return false;
      const copying = [...views].filter(([n, v]) => n !== a && v.repairsInFlight > 0 && procs.state(n) === 'running');
      if (copying.length === 0) return false;
      busy = copying.sort((x, y) => y[1].repairsInFlight - x[1].repairsInFlight)[0]![0];
      return true;
    }, boundMs, 50);
    const b = busy ?? step.nodes[1]!;
    if (!seen && !this.stopping) this.#note(step, `no copies under way within ${(boundMs / 1000).toFixed(0)} s of ${a}'s death (leader's chunk health: ${JSON.stringify(this.#c.monitor.latest?.chunks ?? 'not reported')}); killing ${b} anyway`);
    if (!this.stopping) {
      console.log(`[chaos] ${this.#at()}  #${step.id} SIGKILL ${b}${seen ? `, which is copying chunks for the repair of ${a}` : ''}`);
      this.#c.history.event('fault', { id: step.id, lane: step.lane, kind: step.kind, phase: 'inject', detail: `SIGKILL ${b}${seen ? ' (copying for the repair)' : ''}` });
      await procs.kill(b);
      await this.#wait(step.holdMs);
    }
    await Promise.all([procs.restart(a), procs.restart(b)]);
    this.#healed(step, `${a} and ${b} restarted`);
    return this.#waitForRepair(step);
  }

  /** Corrupts or deletes one chunk file under a running node (each chunk at most once a run). */
  async #damage(step: FaultStep): Promise<void> {
    const node = step.nodes[0]!;
    const dir = this.#c.procs.dirOf(node);
    const hit = new Set(this.damaged.map((d) => d.id));
    const ids = (await chunkFiles(dir)).filter((id) => !hit.has(id));
    if (ids.length === 0) return this.#skip(step, `${node} holds no chunk file yet`);
    const id = ids[step.pick % ids.length]!;
    const path = chunkPath(dir, id);
    let what: string;
    if (step.kind === 'corrupt-chunk') what = await corruptChunkFile(path, step.pick);
    else {
      await deleteChunkFile(path);
      what = 'deleted the file';
    }
    this.damaged.push({ node, id, how: step.kind === 'corrupt-chunk' ? 'corrupted' : 'deleted', atMs: this.#c.history.now() });
    this.#inject(step, `${node}'s copy of chunk ${id.slice(0, 16)}: ${what}`);
  }

  /** After a two-node fault: the lane waits (bounded) until the leader reports every chunk at RF. */
  async #waitForRepair(step: FaultStep): Promise<void> {
    if (this.stopping) return;
    const boundMs = 30_000;
    const started = performance.now();
    const ok = await this.#until(() => this.#c.monitor.healthy() === true, boundMs);
    if (this.#c.monitor.healthy() === undefined && !this.#c.monitor.sawChunkHealth) return this.#note(step, 'the leader reports no chunk health: cannot wait for repair');
    if (!ok && !this.stopping) this.#note(step, `chunks not back at RF ${boundMs / 1000} s after the nodes came back (${JSON.stringify(this.#c.monitor.latest?.chunks)}); going on`);
    else if (ok) console.log(`[chaos] ${this.#at()}  #${step.id} every chunk at RF again after ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }

  async #until(condition: () => boolean | Promise<boolean>, boundMs: number, everyMs = 250): Promise<boolean> {
    const deadline = performance.now() + boundMs;
    while (!(await condition())) {
      if (performance.now() > deadline || this.stopping) return false;
      await this.#wait(everyMs);
    }
    return true;
  }
}

/** Cuts every pair between `a` and `b`, both ways. */
function both(a: readonly string[], b: readonly string[]): Cut[] {
  return a.flatMap((x) => b.flatMap((y) => [{ from: x, to: y }, { from: y, to: x }]));
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
