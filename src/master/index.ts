/** A metadata master: Raft on disk and over libp2p, serving the metadata protocol. */
export { startMaster, peerIdOf, markMasterNew, BOOTSTRAP_MARKER } from './master.ts';
export type { Master, MasterOptions } from './master.ts';
export { RaftDriver } from './raft-driver.ts';
export type { RaftDriverOptions, RaftLogStore, RaftTransport, ReplicatedStateMachine } from './raft-driver.ts';
export { LeaderTaskHost } from './leader-tasks.ts';
export type { LeaderContext, LeaderTask } from './leader-tasks.ts';
export { GarbageCollector } from './garbage-collector.ts';
export { DataPlane, FenceClock } from './data-plane.ts';
export { RaftStore } from './raft-store.ts';
export { MetaMachine, encodeEnvelope } from './meta-machine.ts';
export { MetaService } from './meta-service.ts';
export { Libp2pRaftTransport, RAFT_PROTOCOL } from './raft-transport.ts';
