import type { ErrorCode } from '../errors/index.ts';
import type { Manifest } from './manifest.ts';

/**
 * What the metadata log holds: commands stamped by the leader with everything apply needs
 * (owner, time), so that applying is deterministic on every master.
 */
export type MetaCommand =
  | { readonly op: 'mkdir'; readonly path: string; readonly parents: boolean; readonly owner: string; readonly nowMs: number }
  | {
      readonly op: 'commitFile';
      readonly path: string;
      readonly manifest: Manifest;
      readonly owner: string;
      readonly nowMs: number;
      /** Create missing parent directories (as mkdir -p). */
      readonly parents: boolean;
      /** Fail with ERR_EXISTS rather than replace an existing file. */
      readonly ifAbsent: boolean;
    }
  | { readonly op: 'rm'; readonly path: string; readonly recursive: boolean }
  | { readonly op: 'mv'; readonly from: string; readonly to: string; readonly nowMs: number }
  | {
      readonly op: 'registerNode';
      readonly nodeId: string;
      readonly name?: string;
      readonly addrs: readonly string[];
      readonly capacityBytes: number;
      readonly nowMs: number;
      /** A new node is admitted at once (the leader admits automatically) rather than pending. */
      readonly admit?: boolean;
    }
  | { readonly op: 'setNodeState'; readonly nodeId: string; readonly state: NodeState; readonly nowMs: number }
  /** Forgets a node (refused by the leader while it still holds copies others lack, unless forced). */
  | { readonly op: 'removeNode'; readonly nodeId: string }
  | { readonly op: 'noop' };

/** A command with the client session that proposed it: (clientId, seq) applies once. */
export interface MetaEnvelope {
  readonly clientId: string;
  readonly seq: number;
  readonly cmd: MetaCommand;
}

/**
 * pending: registered, not admitted (gets no data, dials nobody's data); alive, suspect, dead:
 * the leader's failure detector; draining: its copies are moved away, then it may be removed.
 */
export type NodeState = 'pending' | 'alive' | 'suspect' | 'dead' | 'draining';
export const NODE_STATES: readonly NodeState[] = ['pending', 'alive', 'suspect', 'dead', 'draining'];

export type ApplyResult = { readonly ok: true; readonly value?: unknown } | { readonly ok: false; readonly code: ErrorCode; readonly message: string };
