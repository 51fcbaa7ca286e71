import type { Role } from '../../src/auth/index.ts';
import type { DfsPeer } from '../../src/net/index.ts';
import { LeaderTaskHost, type LeaderContext, type LeaderTask } from '../../src/master/leader-tasks.ts';
import { MetaMachine } from '../../src/master/meta-machine.ts';
import { MetaService } from '../../src/master/meta-service.ts';
import { type RaftLogStore, RaftDriver } from '../../src/master/raft-driver.ts';
import { RaftStore } from '../../src/master/raft-store.ts';
import { MemoryLogger } from '../../src/log/index.ts';
import { MemoryNetwork } from './memory-transport.ts';

/** A store that can be told to fail its next writes, as a full or broken disk would. */
export class FaultyStore implements RaftLogStore {
  readonly #inner: RaftLogStore;
  failWrites = false;

  constructor(inner: RaftLogStore) {
    this.#inner = inner;
  }

  load() {
    return this.#inner.load();
  }
  persistReady(rd: Parameters<RaftLogStore['persistReady']>[0]) {
    if (this.failWrites) return Promise.reject(new Error('EIO: simulated disk failure'));
    return this.#inner.persistReady(rd);
  }
  saveSnapshot(s: Parameters<RaftLogStore['saveSnapshot']>[0]) {
    if (this.failWrites) return Promise.reject(new Error('EIO: simulated disk failure'));
    return this.#inner.saveSnapshot(s);
  }
  close() {
    return this.#inner.close();
  }
}

/** A task that records each leadership it ran under and waits until it is aborted. */
export class RecordingTask implements LeaderTask {
  readonly name = 'recorder';
  readonly runs: LeaderContext[] = [];

  async run(ctx: LeaderContext): Promise<void> {
    this.runs.push(ctx);
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
  }
}

export interface InProcessMaster {
  readonly id: string;
  readonly driver: RaftDriver;
  readonly machine: MetaMachine;
  readonly store: FaultyStore;
  readonly service: MetaService;
  readonly host: LeaderTaskHost;
  readonly task: RecordingTask;
  readonly failures: Error[];
}

/**
 * Three masters in one process: real drivers on LevelDB logs, real metadata services (called
 * through handle(), no libp2p), a leader task host each, over an in-memory network.
 */
/** Argon2 parameters cheap enough for tests (never for a cluster). */
export const TEST_PASSWORDS = { params: { memoryKiB: 8, iterations: 1, parallelism: 1 } } as const;

export async function startInProcessMasters(
  dirOf: (id: string) => Promise<string>,
  options: { ids?: string[]; gcGraceMs?: number; autoAdmit?: boolean; adminPeers?: string[]; ticketTtlMs?: number; maxUploadsPerPeer?: number } = {},
) {
  const ids = options.ids ?? ['m1', 'm2', 'm3'];
  const net = new MemoryNetwork();
  const logger = new MemoryLogger();
  const masters = new Map<string, InProcessMaster>();
  for (const id of ids) {
    const machine = new MetaMachine();
    const store = new FaultyStore(await RaftStore.open(await dirOf(id)));
    const failures: Error[] = [];
    const driver = await RaftDriver.start({
      id,
      store,
      transport: net.transport(id),
      machine,
      bootstrap: { voters: ids, learners: [] },
      tickMs: 10,
      electionTicks: 10,
      requestTimeoutMs: 1_000,
      logger: logger.child({ master: id }),
      onFailure: (err) => failures.push(err),
    });
    // Only peerId and listenAddrs are read when the service is called through handle().
    const peer = { peerId: id, listenAddrs: [] } as unknown as DfsPeer;
    const service = new MetaService({
      name: id,
      peer,
      driver,
      machine,
      masterAddrs: new Map(ids.map((m) => [m, `/memory/${m}`])),
      logger,
      autoAdmit: options.autoAdmit ?? true,
      dataPlane: { ...(options.gcGraceMs === undefined ? {} : { gcGraceMs: options.gcGraceMs }), ...(options.maxUploadsPerPeer === undefined ? {} : { maxUploadsPerPeer: options.maxUploadsPerPeer }) },
      adminPeers: new Set(options.adminPeers ?? []),
      passwords: TEST_PASSWORDS,
      ...(options.ticketTtlMs === undefined ? {} : { ticketTtlMs: options.ticketTtlMs }),
    });
    const task = new RecordingTask();
    const host = new LeaderTaskHost({ driver, tasks: [task], logger, restartDelayMs: 50 });
    host.start();
    masters.set(id, { id, driver, machine, store, service, host, task, failures });
  }
  const live = () => [...masters.values()].filter((m) => !m.driver.failure);
  const leader = async (): Promise<InProcessMaster> => {
    const any = live()[0]!;
    await any.driver.until(() => live().some((m) => m.driver.role === 'leader'), 5_000);
    return live().find((m) => m.driver.role === 'leader')!;
  };
  /** The leader, once it has applied the cluster key (it proposes one when it first leads). */
  const ready = async (): Promise<InProcessMaster> => {
    const m = await leader();
    await m.driver.until(() => m.machine.state.authKey !== undefined, 5_000);
    return m;
  };
  let userSeq = 0;
  /**
   * Creates `user` with `roles` (as a master would: the master identity may do anything) and
   * logs in from `peerId`: the token to put in that peer's requests.
   */
  const login = async (user: string, roles: Role[], peerId: string, password = `pw-${user}-0123`): Promise<string> => {
    const m = await ready();
    const added = await m.service.handle({ type: 'write', clientId: 'fixture-users', seq: ++userSeq, cmd: { op: 'addUser', name: user, password, roles } }, { peerId: m.id });
    if (!added.ok && added.code !== 'ERR_EXISTS') throw new Error(`addUser ${user}: ${added.code} ${added.message}`);
    const r = await m.service.handle({ type: 'login', user, password }, { peerId });
    if (!r.ok) throw new Error(`login ${user}: ${r.code} ${r.message}`);
    return (r.value as { token: string }).token;
  };
  const stop = async () => {
    for (const m of masters.values()) {
      await m.host.stop();
      await m.driver.close().catch(() => {});
    }
  };
  return { net, logger, masters, live, leader, ready, login, stop };
}
