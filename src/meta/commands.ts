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
  | { readonly op: 'registerNode'; readonly nodeId: string; readonly addrs: readonly string[]; readonly capacityBytes: number; readonly nowMs: number }
  | { readonly op: 'setNodeState'; readonly nodeId: string; readonly state: NodeState; readonly nowMs: number }
  | { readonly op: 'noop' };

/** A command with the client session that proposed it: (clientId, seq) applies once. */
export interface MetaEnvelope {
  readonly clientId: string;
  readonly seq: number;
  readonly cmd: MetaCommand;
}

export type NodeState = 'alive' | 'suspect' | 'dead' | 'draining';
export const NODE_STATES: readonly NodeState[] = ['alive', 'suspect', 'dead', 'draining'];

export type ApplyResult = { readonly ok: true; readonly value?: unknown } | { readonly ok: false; readonly code: ErrorCode; readonly message: string };
