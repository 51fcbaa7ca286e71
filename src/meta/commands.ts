import type { Level, Role } from '../auth/index.ts';
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
  | { readonly op: 'noop' }
  /**
   * Sets the cluster signing key (Ed25519, libp2p private key protobuf, base64): once, proposed by
   * the first leader that finds none. Only masters ever read it.
   */
  | { readonly op: 'setAuthKey'; readonly key: string }
  /** `password`: the stored argon2id PHC string (the leader hashes; no clear password is logged). */
  | { readonly op: 'addUser'; readonly name: string; readonly password: string; readonly roles: readonly Role[]; readonly nowMs: number }
  | {
      readonly op: 'removeUser';
      readonly name: string;
      /**
       * Who inherits the removed user's files and directories (the user who removed them), so a
       * later user of the same name gets none of them. Absent in entries logged before it
       * existed: those leave the entries owned by the name.
       */
      readonly heir?: string;
    }
  | { readonly op: 'setPassword'; readonly name: string; readonly password: string }
  | { readonly op: 'setUserDisabled'; readonly name: string; readonly disabled: boolean }
  | { readonly op: 'setUserRoles'; readonly name: string; readonly roles: readonly Role[] }
  /** Bumps the user's token generation: every token issued before stops working. */
  | { readonly op: 'revokeTokens'; readonly name: string }
  | { readonly op: 'grant'; readonly path: string; readonly principal: string; readonly level: Level }
  | { readonly op: 'revoke'; readonly path: string; readonly principal: string; readonly level?: Level }
  /** An absent limit is unlimited (both absent: no quota). */
  | { readonly op: 'setQuota'; readonly user: string; readonly maxBytes?: number; readonly maxFiles?: number };

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
