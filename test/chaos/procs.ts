import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MetaClient } from '../../src/client/index.ts';
import type { LocalCluster } from '../../src/cluster/index.ts';
import type { MasterStatus, NodeView } from '../../src/meta/index.ts';
import type { History } from './history.ts';

type Expected = 'running' | 'killed' | 'paused' | 'restarting';

export interface UnexpectedExit {
  readonly name: string;
  readonly atMs: number;
  /** The end of its process log (LocalCluster keeps no exit code; the log says why). */
  readonly logTail: string;
}

/**
 * The harness's hand on the cluster's processes: SIGKILL and restart with the same command line
 * (LocalCluster's startMaster/startNode), SIGSTOP/SIGCONT by pid, and a watch on every process:
 * one that exits without the harness having killed it is recorded (and started again, so the
 * run goes on).
 */
export class Procs {
  readonly #cluster: LocalCluster;
  readonly #history: History;
  readonly #expected = new Map<string, Expected>();
  readonly #restarting = new Set<Promise<void>>();
  readonly unexpected: UnexpectedExit[] = [];
  readonly restartFailures: string[] = [];
  #timer: NodeJS.Timeout | undefined;
  #stopping = false;
  /** Kills, pauses and restarts done, for the figures. */
  readonly counts = { kills: 0, pauses: 0, restarts: 0 };
  /** How long each restart took until the process said it was ready. */
  readonly restartTimes: Array<{ name: string; atMs: number; ms: number }> = [];

  constructor(cluster: LocalCluster, history: History) {
    this.#cluster = cluster;
    this.#history = history;
    for (const name of this.names) this.#expected.set(name, 'running');
  }

  get masters(): string[] {
    return this.#cluster.spec.masters.map((m) => m.name);
  }

  get nodes(): string[] {
    return this.#cluster.nodeNames;
  }

  get names(): string[] {
    return [...this.masters, ...this.nodes];
  }

  isMaster(name: string): boolean {
    return this.masters.includes(name);
  }

  dirOf(name: string): string {
    const spec = this.#cluster.spec;
    const p = spec.masters.find((m) => m.name === name) ?? spec.nodes?.find((n) => n.name === name);
    if (!p) throw new Error(`no process named ${name}`);
    return p.dir;
  }

  portOf(name: string): number {
    const spec = this.#cluster.spec;
    const p = spec.masters.find((m) => m.name === name) ?? spec.nodes?.find((n) => n.name === name);
    if (!p) throw new Error(`no process named ${name}`);
    return p.port;
  }

  /** The process with this libp2p peer id (as it announced at its last start). */
  nameOfPeer(peerId: string): string | undefined {
    return this.names.find((n) => {
      try {
        return this.#cluster.readyInfo(n).peerId === peerId;
      } catch {
        return false;
      }
    });
  }

  /** The storage nodes as the leader sees them (state, copies under way), by name. */
  async nodeViews(meta: MetaClient): Promise<Map<string, NodeView>> {
    const views = (await meta.leaderRequest({ type: 'nodes' })) as NodeView[];
    return new Map(views.map((v) => [this.nameOfPeer(v.id) ?? v.id, v]));
  }

  /** Starts watching for processes that exit by themselves. */
  watch(): void {
    this.#timer = setInterval(() => this.#check(), 200);
  }

  #check(): void {
    if (this.#stopping) return;
    for (const [name, state] of this.#expected) {
      if ((state === 'running' || state === 'paused') && !this.#cluster.isRunning(name)) {
        this.#expected.set(name, 'killed');
        const atMs = this.#history.now();
        void this.#logTail(name).then((logTail) => {
          this.unexpected.push({ name, atMs, logTail });
          this.#history.event('unexpected-exit', { name, logTail });
          console.log(`[chaos] ${name} exited without being killed (at ${(atMs / 1000).toFixed(1)} s); its log ends:\n${indent(logTail)}`);
        });
        if (!this.#stopping) this.#track(this.restart(name));
      }
    }
  }

  #track(p: Promise<void>): void {
    const done = p.catch(() => {}).finally(() => this.#restarting.delete(done));
    this.#restarting.add(done);
  }

  async #logTail(name: string, lines = 15): Promise<string> {
    const text = await readFile(join(this.dirOf(name), 'process.log'), 'utf8').catch(() => '');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  }

  state(name: string): Expected {
    return this.#expected.get(name)!;
  }

  /** Names not serving now by the harness's own doing (killed, paused, restarting). */
  down(): string[] {
    return [...this.#expected].filter(([, s]) => s !== 'running').map(([n]) => n);
  }

  async kill(name: string): Promise<void> {
    const wasPaused = this.#expected.get(name) === 'paused';
    this.#expected.set(name, 'killed');
    this.counts.kills++;
    if (wasPaused) this.#signal(name, 'SIGCONT');
    await this.#cluster.kill(name, 'SIGKILL');
  }

  pause(name: string): void {
    this.#expected.set(name, 'paused');
    this.counts.pauses++;
    this.#signal(name, 'SIGSTOP');
  }

  resume(name: string): void {
    if (this.#expected.get(name) !== 'paused') return;
    this.#signal(name, 'SIGCONT');
    this.#expected.set(name, 'running');
  }

  #signal(name: string, signal: NodeJS.Signals): void {
    const pid = this.#cluster.pids()[name];
    if (pid === undefined) return;
    try {
      process.kill(pid, signal);
    } catch {
      // exited meanwhile: the watch will say so
    }
  }

  /** Starts `name` again with its command line; tries three times before recording a failure. */
  async restart(name: string): Promise<void> {
    if (this.#cluster.isRunning(name)) {
      this.#expected.set(name, 'running');
      return;
    }
    this.#expected.set(name, 'restarting');
    let lastError: unknown;
    for (let attempt = 1; attempt <= 3 && !this.#stopping; attempt++) {
      const atMs = this.#history.now();
      try {
        if (this.isMaster(name)) await this.#cluster.startMaster(name);
        else await this.#cluster.startNode(name);
        this.#expected.set(name, 'running');
        this.counts.restarts++;
        const ms = this.#history.now() - atMs;
        this.restartTimes.push({ name, atMs, ms });
        if (ms > 5_000) this.#history.event('slow-restart', { name, ms: Math.round(ms) });
        return;
      } catch (err) {
        lastError = err;
        // A failed start may leave the process running (a ready timeout): stop it before trying again.
        if (this.#cluster.isRunning(name)) await this.#cluster.kill(name, 'SIGKILL');
      }
    }
    if (this.#stopping) return;
    const message = `${name} could not be restarted: ${(lastError as Error)?.message}`;
    this.restartFailures.push(message);
    this.#history.event('restart-failed', { name, message });
    console.log(`[chaos] ${message}`);
    this.#expected.set(name, 'killed');
  }

  /** Every process back: paused ones continued, killed ones started again. */
  async healAll(): Promise<void> {
    await Promise.all([...this.#restarting]);
    for (const [name, state] of [...this.#expected]) if (state === 'paused') this.resume(name);
    await Promise.all([...this.#expected].filter(([, s]) => s === 'killed').map(([name]) => this.restart(name)));
  }

  /** Stops watching (the end of the run: the cluster is about to be stopped). */
  async stopWatching(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#timer);
    await Promise.all([...this.#restarting]);
  }

  /** Continues every stopped process, so that a SIGTERM can reach it. */
  continueAll(): void {
    for (const name of this.names) this.#signal(name, 'SIGCONT');
  }

  /** Each master's status (or why none), by name. */
  async statuses(meta: MetaClient, withHash = false): Promise<Array<{ name: string; status?: MasterStatus; error?: string }>> {
    const nameOf = new Map(this.#cluster.spec.masters.map((m) => [m.addr, m.name]));
    const all = await meta.statusAll({ withHash });
    return all.map(({ addr, status, error }) => ({ name: nameOf.get(addr) ?? addr, ...(status ? { status } : {}), ...(error ? { error } : {}) }));
  }

  /** The master that says it leads now, if one does (a paused or cut-off one may still think so). */
  async leader(meta: MetaClient): Promise<string | undefined> {
    const all = await this.statuses(meta);
    const leaders = all.filter((s) => s.status?.role === 'leader').sort((a, b) => b.status!.term - a.status!.term);
    return leaders[0]?.name;
  }
}

export function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}
