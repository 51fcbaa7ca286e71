/** A metadata master: Raft on disk and over libp2p, serving the metadata protocol. */
export { startMaster, peerIdOf } from './master.ts';
export type { Master, MasterOptions } from './master.ts';
export { RaftDriver } from './raft-driver.ts';
export type { RaftDriverOptions, RaftTransport, ReplicatedStateMachine } from './raft-driver.ts';
export { RaftStore } from './raft-store.ts';
export { MetaMachine, encodeEnvelope } from './meta-machine.ts';
export { MetaService } from './meta-service.ts';
export { Libp2pRaftTransport, RAFT_PROTOCOL } from './raft-transport.ts';
