import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DfsError } from '../errors/index.ts';
import { createPeer, type DfsPeer, peerIdInAddr } from '../net/index.ts';
import { MetaMachine } from './meta-machine.ts';
import { GarbageCollector } from './garbage-collector.ts';
import { MetaService } from './meta-service.ts';
import { RaftDriver } from './raft-driver.ts';
import { RaftStore } from './raft-store.ts';
import { Libp2pRaftTransport } from './raft-transport.ts';

export interface MasterOptions {
  /** A human name for logs and `dfs status` (m1, m2, ...). */
  readonly name: string;
  readonly dir: string;
  /** Multiaddrs to listen on, e.g. /ip4/127.0.0.1/tcp/7001. */
  readonly listen: readonly string[];
  /** The other masters, as multiaddrs ending in /p2p/<peer id>. */
  readonly peers: readonly string[];
  readonly psk?: Uint8Array;
  readonly tickMs?: number;
  readonly electionTicks?: number;
  readonly snapshotEveryEntries?: number;
  /** Unreferenced chunks are deleted from nodes once untouched this long. Default 10 min. */
  readonly gcGraceMs?: number;
  readonly gcIntervalMs?: number;
}

export interface Master {
  readonly name: string;
  readonly peerId: string;
  readonly addrs: readonly string[];
  readonly driver: RaftDriver;
  readonly service: MetaService;
  readonly gc: GarbageCollector;
  stop(): Promise<void>;
}

/** The peer id at the end of a multiaddr (/.../p2p/<id>); ERR_INVALID_ARGUMENT without one. */
export function peerIdOf(addr: string): string {
  const id = peerIdInAddr(addr);
  if (!id) throw new DfsError('ERR_INVALID_ARGUMENT', `master address ${addr} must end in /p2p/<peer id> (see dfs master init)`);
  return id;
}

/**
 * Starts a master: its libp2p peer (identity in `dir`), its Raft log (`dir/raft`), Raft over
 * /dfs/raft/1.0.0 to the other masters, and the metadata service on /dfs/meta/1.0.0. The Raft
 * ids are the masters' peer ids, so a message's sender is whoever Noise authenticated.
 */
export async function startMaster(options: MasterOptions): Promise<Master> {
  await mkdir(options.dir, { recursive: true });
  const peerAddrs = new Map<string, string>();
  for (const addr of options.peers) peerAddrs.set(peerIdOf(addr), addr);
  const peer: DfsPeer = await createPeer({ dataDir: options.dir, listen: [...options.listen], ...(options.psk ? { psk: options.psk } : {}) });
  try {
    if (peerAddrs.has(peer.peerId)) throw new DfsError('ERR_INVALID_ARGUMENT', `--peers lists this master itself (${peer.peerId})`);
    const selfAddr = peer.listenAddrs[0];
    const masterAddrs = new Map(peerAddrs);
    if (selfAddr) masterAddrs.set(peer.peerId, selfAddr);
    const transport = new Libp2pRaftTransport(peer, peerAddrs);
    await transport.start();
    const machine = new MetaMachine();
    const driver = await RaftDriver.start({
      id: peer.peerId,
      store: await RaftStore.open(join(options.dir, 'raft')),
      transport,
      machine,
      bootstrap: { voters: [peer.peerId, ...peerAddrs.keys()].sort(), learners: [] },
      tickMs: options.tickMs ?? 50,
      electionTicks: options.electionTicks ?? 10,
      heartbeatTicks: 1,
      ...(options.snapshotEveryEntries !== undefined ? { snapshotEveryEntries: options.snapshotEveryEntries } : {}),
    });
    const service = new MetaService({ name: options.name, peer, driver, machine, masterAddrs, dataPlane: { ...(options.gcGraceMs !== undefined ? { gcGraceMs: options.gcGraceMs } : {}) } });
    await service.start();
    const gc = new GarbageCollector({ peer, service, machine, intervalMs: options.gcIntervalMs ?? Math.min(5_000, Math.max(100, (options.gcGraceMs ?? 600_000) / 4)) });
    gc.start();
    return {
      name: options.name,
      peerId: peer.peerId,
      addrs: peer.listenAddrs,
      driver,
      service,
      gc,
      async stop() {
        gc.stop();
        await transport.stop();
        await driver.close();
        await peer.stop();
      },
    };
  } catch (err) {
    await peer.stop().catch(() => {});
    throw err;
  }
}
