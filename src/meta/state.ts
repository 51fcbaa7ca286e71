import {
  applyUsage,
  canonicalRoles,
  type Grant,
  GrantTable,
  isRole,
  isUserName,
  type Level,
  LEVELS,
  parseGrant,
  parseStoredPassword,
  putDelta,
  type Quota,
  type Role,
  type Usage,
  wouldExceed,
  ZERO_USAGE,
} from '../auth/index.ts';
import type { Blake3 } from '../chunker/index.ts';
import { DfsError, ERROR_CODES, isDfsError } from '../errors/index.ts';
import { type ApplyResult, type MetaCommand, type MetaEnvelope, NODE_STATES, type NodeState } from './commands.ts';
import { MAX_ADDR_CHARS, MAX_AUTH_KEY_CHARS, MAX_CLIENT_ID_CHARS, MAX_ID_CHARS, MAX_NODE_ADDRS, MAX_NODE_NAME } from './envelope.ts';
import { checkedManifest, type Manifest, validateManifest } from './manifest.ts';
import { baseName, isWithin, joinPath, normalizePath, parentOf, ROOT } from './paths.ts';

export interface DirEntry {
  readonly kind: 'dir';
  readonly owner: string;
  readonly mtimeMs: number;
}

export interface FileEntry {
  readonly kind: 'file';
  readonly owner: string;
  readonly mtimeMs: number;
  readonly size: number;
  readonly manifest: Manifest;
}

export type Entry = DirEntry | FileEntry;

export interface NodeRecord {
  readonly id: string;
  /** What the operator called it (`dfs node start --name`), for tables and logs; not unique. */
  readonly name?: string;
  readonly addrs: readonly string[];
  readonly capacityBytes: number;
  readonly state: NodeState;
  readonly registeredAtMs: number;
  readonly stateSinceMs: number;
}

export interface ClusterSettings {
  readonly replicationFactor: number;
}

/**
 * A user as the replicated state holds it. `password` is the argon2id PHC string (never a clear
 * password). `gen` is the token generation: the log index of the user's creation or of the last
 * change that revokes tokens (password, roles, disabled, revokeTokens), so it only grows, even
 * across a removal and a re-creation under the same name.
 */
export interface UserRecord {
  readonly name: string;
  readonly password: string;
  readonly roles: readonly Role[];
  readonly disabled: boolean;
  readonly gen: number;
  readonly createdAtMs: number;
  readonly quota?: Quota;
}

interface Session {
  readonly seq: number;
  readonly result: ApplyResult;
}

export interface ListedEntry {
  readonly name: string;
  readonly path: string;
  readonly kind: Entry['kind'];
  readonly size: number;
  readonly mtimeMs: number;
  readonly owner: string;
}

/**
 * Records in this order: the header (with the cluster key, when set), entries by path, nodes by
 * id, users by name, grants by path (in their order on a path), sessions by recency. Usage is not
 * stored: restore recounts it from the entries, as it does reference counts.
 */
export type SnapshotRecord =
  | { readonly t: 'header'; readonly version: 1; readonly appliedIndex: number; readonly settings: ClusterSettings; readonly authKey?: string }
  | { readonly t: 'entry'; readonly path: string; readonly entry: Entry }
  | { readonly t: 'node'; readonly node: NodeRecord }
  | { readonly t: 'user'; readonly user: UserRecord }
  | { readonly t: 'grant'; readonly grant: Grant }
  | { readonly t: 'session'; readonly clientId: string; readonly seq: number; readonly result: ApplyResult };

export interface MetaStateOptions {
  /** Client sessions remembered for exactly-once retries; the least recently used go first. */
  readonly maxSessions?: number;
  readonly settings?: ClusterSettings;
}

/** Deepest JSON a session's result value may be in a snapshot (apply's own are 3 or 4 deep). */
const MAX_RESULT_DEPTH = 16;
/** Users and grants a state may hold: each is a small record, bounded so a snapshot stays bounded. */
export const MAX_USERS = 100_000;
export const MAX_GRANTS = 1_000_000;

/**
 * The replicated metadata state machine: namespace, manifests, chunk reference counts, node
 * registry and client sessions. `apply` is deterministic — it reads nothing but its inputs —
 * so every master that applies the same log holds the same state (checked by `stateHash`).
 * Expected refusals (ERR_EXISTS, ERR_NOT_FOUND, ...) are results, not exceptions; a command is
 * validated whole before anything changes, so a refused command leaves no trace.
 */
/** Replicas per chunk in a new cluster. */
export const DEFAULT_REPLICATION_FACTOR = 3;

export class MetaState {
  readonly #entries = new Map<string, Entry>();
  /** Sorted child names per directory, for paged listing. */
  readonly #children = new Map<string, string[]>();
  readonly #refs = new Map<string, number>();
  readonly #nodes = new Map<string, NodeRecord>();
  /** Map order is least- to most-recently used: eviction takes the first. */
  readonly #sessions = new Map<string, Session>();
  readonly #maxSessions: number;
  #settings: ClusterSettings;
  #appliedIndex = 0;
  /** The cluster signing key (libp2p Ed25519 private key protobuf, base64), once set. */
  #authKey: string | undefined;
  readonly #users = new Map<string, UserRecord>();
  readonly #grants = new GrantTable();
  #grantCount = 0;
  /** Bytes and entries owned, per owner name (users or not): derived from the entries. */
  readonly #usage = new Map<string, Usage>();

  constructor(options: MetaStateOptions = {}) {
    this.#maxSessions = options.maxSessions ?? 10_000;
    this.#settings = options.settings ?? { replicationFactor: DEFAULT_REPLICATION_FACTOR };
    this.#entries.set(ROOT, { kind: 'dir', owner: 'root', mtimeMs: 0 });
    this.#children.set(ROOT, []);
  }

  get appliedIndex(): number {
    return this.#appliedIndex;
  }

  get settings(): ClusterSettings {
    return this.#settings;
  }

  /** Applies the log entry at `index`. Indexes must increase; a command applies at most once per session. */
  apply(index: number, envelope: MetaEnvelope): ApplyResult {
    if (!(Number.isSafeInteger(index) && index > this.#appliedIndex)) {
      throw new Error(`apply out of order: index ${index} after ${this.#appliedIndex}`);
    }
    this.#appliedIndex = index;
    const { clientId, seq } = envelope;
    const session = this.#sessions.get(clientId);
    if (session && seq <= session.seq) {
      if (seq === session.seq) return session.result; // a retry: the first result, no second effect
      return refusal('ERR_STALE_REQUEST', `request ${seq} of client ${clientId} is older than ${session.seq}, already applied`);
    }
    const result = this.#execute(envelope.cmd);
    if (clientId !== '') this.#remember(clientId, { seq, result });
    return result;
  }

  /**
   * The result a request (clientId, seq) got when it applied, if it is the client's last one:
   * what a retry must be answered with. Read-only (does not refresh the session's age).
   */
  resultOf(clientId: string, seq: number): ApplyResult | undefined {
    const session = this.#sessions.get(clientId);
    return session && session.seq === seq ? session.result : undefined;
  }

  #remember(clientId: string, session: Session): void {
    this.#sessions.delete(clientId);
    this.#sessions.set(clientId, session);
    if (this.#sessions.size > this.#maxSessions) {
      const oldest = this.#sessions.keys().next().value as string;
      this.#sessions.delete(oldest);
    }
  }

  #execute(cmd: MetaCommand): ApplyResult {
    try {
      switch (cmd.op) {
        case 'mkdir':
          return this.#mkdir(cmd);
        case 'commitFile':
          return this.#commitFile(cmd);
        case 'rm':
          return this.#rm(cmd);
        case 'mv':
          return this.#mv(cmd);
        case 'registerNode':
          return this.#registerNode(cmd);
        case 'setNodeState':
          return this.#setNodeState(cmd);
        case 'removeNode': {
          const id = checkedId(cmd.nodeId, 'nodeId');
          if (!this.#nodes.has(id)) return refusal('ERR_NOT_FOUND', `no node ${id}`);
          this.#nodes.delete(id);
          return { ok: true };
        }
        case 'noop':
          return { ok: true };
        case 'setAuthKey':
          return this.#setAuthKey(cmd);
        case 'addUser':
          return this.#addUser(cmd);
        case 'removeUser':
          return this.#removeUser(cmd);
        case 'setPassword':
          return this.#changeUser(cmd.name, (u) => ({ ...u, password: checkedPassword(cmd.password) }), true);
        case 'setUserDisabled':
          return this.#changeUser(cmd.name, (u) => ({ ...u, disabled: checkedBoolean(cmd.disabled, 'disabled') }), true);
        case 'setUserRoles':
          return this.#changeUser(cmd.name, (u) => ({ ...u, roles: checkedRoles(cmd.roles) }), true);
        case 'revokeTokens':
          return this.#changeUser(cmd.name, (u) => u, true);
        case 'setQuota':
          return this.#changeUser(cmd.user, (u) => withQuota(u, checkedQuota(cmd.maxBytes, cmd.maxFiles)), false);
        case 'grant':
          return this.#grant(cmd);
        case 'revoke':
          return this.#revoke(cmd);
        default: {
          // Never JSON.stringify an untrusted value here: a deeply nested one overflows the stack.
          const op = (cmd as { op?: unknown }).op;
          return refusal('ERR_INVALID_ARGUMENT', `unknown command ${typeof op === 'string' ? JSON.stringify(op.slice(0, 64)) : `<${typeof op}>`}`);
        }
      }
    } catch (err) {
      if (isDfsError(err)) return refusal(err.code, err.message);
      throw err; // a bug: fail loudly rather than let replicas drift
    }
  }

  // ---- namespace commands ----

  #mkdir(cmd: Extract<MetaCommand, { op: 'mkdir' }>): ApplyResult {
    const path = normalizePath(cmd.path);
    const owner = checkedId(cmd.owner, 'owner');
    const nowMs = checkedTime(cmd.nowMs);
    const existing = this.#entries.get(path);
    if (existing) {
      if (existing.kind === 'dir' && cmd.parents) return { ok: true, value: { created: [] } };
      return refusal('ERR_EXISTS', `${path} already exists`);
    }
    const missing = this.#missingAncestors(path, cmd.parents);
    this.#checkQuota(owner, 0, missing.length + 1);
    for (const dir of [...missing, path]) this.#insert(dir, { kind: 'dir', owner, mtimeMs: nowMs });
    return { ok: true, value: { created: [...missing, path] } };
  }

  #commitFile(cmd: Extract<MetaCommand, { op: 'commitFile' }>): ApplyResult {
    const path = normalizePath(cmd.path);
    if (path === ROOT) return refusal('ERR_IS_DIR', '/ is a directory');
    const manifest = checkedManifest(cmd.manifest);
    const owner = checkedId(cmd.owner, 'owner');
    const nowMs = checkedTime(cmd.nowMs);
    const existing = this.#entries.get(path);
    if (existing?.kind === 'dir') return refusal('ERR_IS_DIR', `${path} is a directory`);
    if (existing && cmd.ifAbsent) return refusal('ERR_EXISTS', `${path} already exists`);
    const missing = this.#missingAncestors(path, cmd.parents);
    // The authoritative quota check (the leader's at place is a courtesy): an overwrite of the
    // owner's own file is charged the difference; of someone else's, the whole file.
    const put = putDelta(manifest.size, existing?.kind === 'file' && existing.owner === owner ? existing.size : undefined);
    this.#checkQuota(owner, put.addBytes, missing.length + put.addFiles);
    for (const dir of missing) this.#insert(dir, { kind: 'dir', owner, mtimeMs: nowMs });
    const entry: FileEntry = { kind: 'file', owner, mtimeMs: nowMs, size: manifest.size, manifest };
    this.#addRefs(manifest);
    let freed: string[] = [];
    if (existing) {
      freed = this.#dropRefs(existing.manifest);
      this.#charge(existing, -1);
      this.#entries.set(path, entry);
      this.#charge(entry, 1);
    } else {
      this.#insert(path, entry);
    }
    return { ok: true, value: { replaced: existing !== undefined, freedChunks: freed } };
  }

  #rm(cmd: Extract<MetaCommand, { op: 'rm' }>): ApplyResult {
    const path = normalizePath(cmd.path);
    if (path === ROOT) return refusal('ERR_INVALID_PATH', 'the root directory cannot be removed');
    const entry = this.#entries.get(path);
    if (!entry) return refusal('ERR_NOT_FOUND', `${path}: no such file or directory`);
    const subtree = this.#subtree(path);
    if (entry.kind === 'dir' && subtree.length > 1 && !cmd.recursive) {
      return refusal('ERR_NOT_EMPTY', `${path} is a directory and not empty (use recursive)`);
    }
    const freed: string[] = [];
    for (const p of subtree.reverse()) {
      const e = this.#entries.get(p)!;
      if (e.kind === 'file') freed.push(...this.#dropRefs(e.manifest));
      this.#remove(p);
    }
    this.#grantCount -= this.#grants.removeWithin(path);
    return { ok: true, value: { removed: subtree.length, freedChunks: freed } };
  }

  #mv(cmd: Extract<MetaCommand, { op: 'mv' }>): ApplyResult {
    const from = normalizePath(cmd.from);
    const to = normalizePath(cmd.to);
    const nowMs = checkedTime(cmd.nowMs);
    if (from === ROOT) return refusal('ERR_INVALID_PATH', 'the root directory cannot be moved');
    const source = this.#entries.get(from);
    if (!source) return refusal('ERR_NOT_FOUND', `${from}: no such file or directory`);
    if (from === to) return { ok: true, value: { replaced: false, freedChunks: [] } };
    if (isWithin(to, from)) return refusal('ERR_INVALID_PATH', `cannot move ${from} into itself`);
    const parent = this.#entries.get(parentOf(to));
    if (!parent) return refusal('ERR_NOT_FOUND', `${parentOf(to)}: no such directory`);
    if (parent.kind !== 'dir') return refusal('ERR_NOT_DIR', `${parentOf(to)} is not a directory`);
    const target = this.#entries.get(to);
    // Like rename(2): a file replaces a file atomically; anything else must not exist.
    if (target && !(target.kind === 'file' && source.kind === 'file')) {
      return refusal('ERR_EXISTS', `${to} already exists`);
    }
    let freed: string[] = [];
    if (target?.kind === 'file') {
      freed = this.#dropRefs(target.manifest);
      this.#remove(to);
      this.#grantCount -= this.#grants.removeWithin(to);
    }
    const moved = this.#subtree(from);
    const entries = moved.map((p) => [p, this.#entries.get(p)!] as const);
    for (const p of [...moved].reverse()) this.#remove(p);
    for (const [p, e] of entries) {
      const newPath = to + p.slice(from.length);
      this.#insert(newPath, p === from ? { ...e, mtimeMs: nowMs } : e);
    }
    // Grants travel with what they are on (nothing is left on `to` and below: it did not exist).
    this.#grants.moveWithin(from, to);
    return { ok: true, value: { replaced: target !== undefined, freedChunks: freed } };
  }

  // ---- node registry ----

  #registerNode(cmd: Extract<MetaCommand, { op: 'registerNode' }>): ApplyResult {
    const id = checkedId(cmd.nodeId, 'nodeId');
    const nowMs = checkedTime(cmd.nowMs);
    if (!Array.isArray(cmd.addrs) || cmd.addrs.length > MAX_NODE_ADDRS || !cmd.addrs.every((a) => typeof a === 'string' && a.length > 0 && a.length <= 1024)) {
      throw new DfsError('ERR_INVALID_ARGUMENT', `a node has 1..${MAX_NODE_ADDRS} addresses of at most 1024 characters`);
    }
    if (!Number.isSafeInteger(cmd.capacityBytes) || cmd.capacityBytes < 0) {
      throw new DfsError('ERR_INVALID_ARGUMENT', 'capacityBytes must be a non-negative integer');
    }
    const previous = this.#nodes.get(id);
    // A node that registers again keeps its state (liveness is the failure detector's to set);
    // a new one is pending until admitted, unless the leader admits automatically.
    const state: NodeState = previous ? previous.state : cmd.admit === true ? 'alive' : 'pending';
    if (cmd.name !== undefined && !(typeof cmd.name === 'string' && cmd.name.length > 0 && cmd.name.length <= MAX_NODE_NAME)) {
      throw new DfsError('ERR_INVALID_ARGUMENT', `a node name has 1..${MAX_NODE_NAME} characters`);
    }
    const node: NodeRecord = {
      id,
      ...(cmd.name !== undefined ? { name: cmd.name } : {}),
      addrs: [...cmd.addrs],
      capacityBytes: cmd.capacityBytes,
      state,
      registeredAtMs: previous?.registeredAtMs ?? nowMs,
      stateSinceMs: previous ? previous.stateSinceMs : nowMs,
    };
    this.#nodes.set(id, node);
    return { ok: true, value: { node, rejoined: previous !== undefined } };
  }

  #setNodeState(cmd: Extract<MetaCommand, { op: 'setNodeState' }>): ApplyResult {
    const id = checkedId(cmd.nodeId, 'nodeId');
    const nowMs = checkedTime(cmd.nowMs);
    if (!NODE_STATES.includes(cmd.state)) throw new DfsError('ERR_INVALID_ARGUMENT', `unknown node state ${typeof cmd.state === 'string' ? JSON.stringify((cmd.state as string).slice(0, 64)) : `<${typeof cmd.state}>`}`);
    const node = this.#nodes.get(id);
    if (!node) return refusal('ERR_NOT_FOUND', `no node ${id}`);
    if (node.state !== cmd.state) this.#nodes.set(id, { ...node, state: cmd.state, stateSinceMs: nowMs });
    return { ok: true };
  }

  // ---- users, grants, the cluster key ----

  #setAuthKey(cmd: Extract<MetaCommand, { op: 'setAuthKey' }>): ApplyResult {
    const key = checkedAuthKey(cmd.key);
    // Set once: a second leader racing the first must not replace a key tokens were signed with.
    if (this.#authKey !== undefined) return refusal('ERR_EXISTS', 'the cluster key is already set');
    this.#authKey = key;
    return { ok: true };
  }

  #addUser(cmd: Extract<MetaCommand, { op: 'addUser' }>): ApplyResult {
    const name = checkedUserName(cmd.name);
    const user: UserRecord = {
      name,
      password: checkedPassword(cmd.password),
      roles: checkedRoles(cmd.roles),
      disabled: false,
      gen: this.#appliedIndex,
      createdAtMs: checkedTime(cmd.nowMs),
    };
    if (this.#users.has(name)) return refusal('ERR_EXISTS', `user ${name} already exists (dfs user list)`);
    if (this.#users.size >= MAX_USERS) return refusal('ERR_INVALID_ARGUMENT', `this cluster has the most users it may hold (${MAX_USERS}): remove some first`);
    this.#users.set(name, user);
    return { ok: true, value: { name } };
  }

  #removeUser(cmd: Extract<MetaCommand, { op: 'removeUser' }>): ApplyResult {
    const name = checkedUserName(cmd.name);
    if (!this.#users.delete(name)) return refusal('ERR_NOT_FOUND', `no user ${name} (dfs user list)`);
    // Grants to a removed user must not pass to a later user of the same name, nor their files:
    // those go to the heir (who removed them). One pass over the namespace: a rare command.
    for (const g of this.#grants.all()) if (g.principal === name && this.#grants.revoke(g.path, name)) this.#grantCount--;
    const heir = cmd.heir === undefined ? undefined : checkedUserName(cmd.heir);
    let inherited = 0;
    if (heir !== undefined && heir !== name) {
      for (const [path, entry] of this.#entries) {
        if (entry.owner !== name) continue;
        const moved: Entry = { ...entry, owner: heir };
        this.#charge(entry, -1);
        this.#charge(moved, 1);
        this.#entries.set(path, moved);
        inherited++;
      }
    }
    return { ok: true, value: { inherited } };
  }

  /** Changes a user; `revokes`: every token issued before stops working (gen = this index). */
  #changeUser(nameInput: unknown, change: (u: UserRecord) => UserRecord, revokes: boolean): ApplyResult {
    const name = checkedUserName(nameInput);
    const user = this.#users.get(name);
    if (!user) return refusal('ERR_NOT_FOUND', `no user ${name} (dfs user list)`);
    const next = change(user);
    this.#users.set(name, revokes ? { ...next, gen: this.#appliedIndex } : next);
    return { ok: true };
  }

  #grant(cmd: Extract<MetaCommand, { op: 'grant' }>): ApplyResult {
    const g = parseGrant({ path: normalizePath(cmd.path), principal: cmd.principal, level: cmd.level });
    if (!this.#entries.has(g.path)) return refusal('ERR_NOT_FOUND', `${g.path}: no such file or directory`);
    if (!g.principal.startsWith('@') && !this.#users.has(g.principal)) return refusal('ERR_NOT_FOUND', `no user ${g.principal} (dfs user list)`);
    const had = this.#grants.grantsAt(g.path).some((x) => x.principal === g.principal);
    if (!had && this.#grantCount >= MAX_GRANTS) return refusal('ERR_INVALID_ARGUMENT', `this cluster has the most grants it may hold (${MAX_GRANTS})`);
    const changed = this.#grants.grant(g);
    if (!had) this.#grantCount++;
    return { ok: true, value: { changed } };
  }

  #revoke(cmd: Extract<MetaCommand, { op: 'revoke' }>): ApplyResult {
    const path = normalizePath(cmd.path);
    const principal = checkedPrincipal(cmd.principal);
    if (cmd.level !== undefined && !LEVELS.includes(cmd.level)) throw new DfsError('ERR_INVALID_ARGUMENT', 'level must be read, write or admin');
    const current = this.#grants.grantsAt(path).find((g) => g.principal === principal);
    if (current === undefined || (cmd.level !== undefined && current.level !== cmd.level)) {
      return refusal('ERR_NOT_FOUND', `${principal} has no ${cmd.level ?? ''}${cmd.level ? ' ' : ''}grant on exactly ${path} (dfs acl ${path})`);
    }
    this.#grants.revoke(path, principal);
    this.#grantCount--;
    return { ok: true };
  }

  /** ERR_QUOTA (thrown, so the command leaves no trace) when `owner` may not grow by this much. */
  #checkQuota(owner: string, addBytes: number, addFiles: number): void {
    const quota = this.#users.get(owner)?.quota;
    if (quota === undefined) return;
    const excess = wouldExceed(this.usage(owner), quota, addBytes, addFiles);
    if (excess) throw new DfsError('ERR_QUOTA', `${owner}: ${excess.message}`);
  }

  /** Counts an entry in (sign 1) or out (-1) of its owner's usage. */
  #charge(entry: Entry, sign: 1 | -1): void {
    const bytes = entry.kind === 'file' ? entry.size : 0;
    const next = applyUsage(this.usage(entry.owner), sign * bytes, sign);
    if (next.bytes === 0 && next.files === 0) this.#usage.delete(entry.owner);
    else this.#usage.set(entry.owner, next);
  }

  /** The cluster signing key (base64 protobuf), once the first leader set it. */
  get authKey(): string | undefined {
    return this.#authKey;
  }

  user(name: string): UserRecord | undefined {
    return this.#users.get(name);
  }

  /** Every user, by name. */
  users(): UserRecord[] {
    return [...this.#users.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** What `owner` owns: bytes of files, and files and directories counted. */
  usage(owner: string): Usage {
    return this.#usage.get(owner) ?? ZERO_USAGE;
  }

  /** The explicit grants on exactly `path` (canonical). */
  grantsAt(path: string): readonly Grant[] {
    return this.#grants.grantsAt(path);
  }

  /** Canonical paths strictly below `path` that carry grants. */
  grantedPathsBelow(path: string): Iterable<string> {
    return this.#grants.grantedPathsBelow(path);
  }

  /** The owner of the entry at canonical `path`, if there is one. */
  ownerOf(path: string): string | undefined {
    return this.#entries.get(path)?.owner;
  }

  // ---- reads ----

  stat(path: string): Entry | undefined {
    return this.#entries.get(normalizePath(path));
  }

  /** One page of a directory, in name order, starting after `after`. */
  list(path: string, options: { after?: string; limit?: number } = {}): { entries: ListedEntry[]; next?: string } {
    const dir = normalizePath(path);
    const entry = this.#entries.get(dir);
    if (!entry) throw new DfsError('ERR_NOT_FOUND', `${dir}: no such file or directory`);
    if (entry.kind !== 'dir') throw new DfsError('ERR_NOT_DIR', `${dir} is not a directory`);
    const limit = Math.max(1, Math.min(options.limit ?? 1000, 10_000));
    const names = this.#children.get(dir)!;
    const start = options.after === undefined ? 0 : upperBound(names, options.after);
    const page = names.slice(start, start + limit).map((name) => {
      const childPath = joinPath(dir, name);
      const e = this.#entries.get(childPath)!;
      return { name, path: childPath, kind: e.kind, size: e.kind === 'file' ? e.size : 0, mtimeMs: e.mtimeMs, owner: e.owner };
    });
    const more = start + limit < names.length;
    return more ? { entries: page, next: page[page.length - 1]!.name } : { entries: page };
  }

  nodes(): NodeRecord[] {
    return [...this.#nodes.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  node(id: string): NodeRecord | undefined {
    return this.#nodes.get(id);
  }

  /** How many manifest slots reference a chunk (0 when none). */
  refCount(chunkId: string): number {
    return this.#refs.get(chunkId) ?? 0;
  }

  /** Every chunk some committed manifest references. */
  referencedChunks(): IterableIterator<string> {
    return this.#refs.keys();
  }

  get counts(): { entries: number; files: number; chunksReferenced: number; nodes: number; sessions: number; users: number; grants: number } {
    let files = 0;
    for (const e of this.#entries.values()) if (e.kind === 'file') files += 1;
    return { entries: this.#entries.size, files, chunksReferenced: this.#refs.size, nodes: this.#nodes.size, sessions: this.#sessions.size, users: this.#users.size, grants: this.#grantCount };
  }

  // ---- snapshot, restore, hash ----

  /**
   * The whole state as a stream of records in a canonical order (entries by path, sessions by
   * recency), so a snapshot never needs one giant buffer and equal states stream equal records.
   * Reference counts are not stored: restore recounts them from the manifests.
   */
  snapshotRecords(): Generator<SnapshotRecord> {
    return this.captureSnapshot()();
  }

  /**
   * The state's records as of now, for serialising later while the state moves on: the maps
   * are copied (their values are never mutated in place, only replaced), the sort by path is
   * left to whoever iterates. Cheap enough to call with applies running.
   */
  captureSnapshot(): () => Generator<SnapshotRecord> {
    const header: SnapshotRecord = {
      t: 'header',
      version: 1,
      appliedIndex: this.#appliedIndex,
      settings: this.#settings,
      ...(this.#authKey !== undefined ? { authKey: this.#authKey } : {}),
    };
    const entries = [...this.#entries];
    const nodes = this.nodes();
    const users = this.users();
    const grants = this.#grants.all();
    const sessions = [...this.#sessions];
    return function* () {
      yield header;
      entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      for (const [path, entry] of entries) yield { t: 'entry', path, entry };
      for (const node of nodes) yield { t: 'node', node };
      for (const user of users) yield { t: 'user', user };
      for (const grant of grants) yield { t: 'grant', grant };
      for (const [clientId, s] of sessions) yield { t: 'session', clientId, seq: s.seq, result: s.result };
    };
  }

  static async restore(records: AsyncIterable<SnapshotRecord> | Iterable<SnapshotRecord>, options: MetaStateOptions = {}): Promise<MetaState> {
    let state: MetaState | undefined;
    for await (const r of records) {
      if (!state) {
        if (r.t !== 'header' || r.version !== 1) throw new DfsError('ERR_IO', 'metadata snapshot does not start with a version 1 header');
        state = new MetaState({ ...options, settings: r.settings });
        state.#appliedIndex = r.appliedIndex;
        state.#authKey = r.authKey;
        continue;
      }
      switch (r.t) {
        case 'entry':
          // Sorted by path, so every parent arrives before its children.
          // The root is nobody's to count (as in a new state).
          if (r.path === ROOT) state.#entries.set(ROOT, r.entry);
          else state.#insert(r.path, r.entry);
          if (r.entry.kind === 'file') state.#addRefs(r.entry.manifest);
          break;
        case 'node':
          state.#nodes.set(r.node.id, r.node);
          break;
        case 'user':
          state.#users.set(r.user.name, r.user);
          break;
        case 'grant':
          state.#grants.grant(r.grant);
          state.#grantCount++;
          break;
        case 'session':
          state.#sessions.set(r.clientId, { seq: r.seq, result: r.result });
          break;
        case 'header':
          throw new DfsError('ERR_IO', 'metadata snapshot has a second header');
      }
    }
    if (!state) throw new DfsError('ERR_IO', 'metadata snapshot is empty');
    return state;
  }

  /** BLAKE3 over the canonical snapshot stream: equal on every master that applied the same log. */
  stateHash(blake3: Blake3): string {
    const encoder = new TextEncoder();
    const parts: Uint8Array[] = [];
    for (const r of this.snapshotRecords()) parts.push(encoder.encode(JSON.stringify(r)), encoder.encode('\n'));
    return blake3.hashHex(parts);
  }

  /** Structural invariants; throws on the first violation. For tests and debug builds. */
  checkInvariants(): void {
    const recount = new Map<string, number>();
    for (const [path, entry] of this.#entries) {
      if (path !== ROOT) {
        const parent = this.#entries.get(parentOf(path));
        if (parent?.kind !== 'dir') throw new Error(`invariant: ${path} has no parent directory`);
        if (!this.#children.get(parentOf(path))!.includes(baseName(path))) throw new Error(`invariant: ${path} not listed in its parent`);
      }
      if (entry.kind === 'dir' && !this.#children.has(path)) throw new Error(`invariant: directory ${path} has no child list`);
      if (entry.kind === 'file') for (const [id] of entry.manifest.chunks) recount.set(id, (recount.get(id) ?? 0) + 1);
    }
    for (const [dir, names] of this.#children) {
      for (let i = 1; i < names.length; i++) if (!(names[i - 1]! < names[i]!)) throw new Error(`invariant: children of ${dir} not sorted`);
      for (const n of names) if (!this.#entries.has(joinPath(dir, n))) throw new Error(`invariant: ${dir} lists missing ${n}`);
    }
    if (recount.size !== this.#refs.size) throw new Error('invariant: reference counts disagree with a recount');
    const usage = new Map<string, Usage>();
    for (const [path, e] of this.#entries) {
      if (path === ROOT) continue;
      const u = usage.get(e.owner) ?? ZERO_USAGE;
      usage.set(e.owner, { bytes: u.bytes + (e.kind === 'file' ? e.size : 0), files: u.files + 1 });
    }
    if (usage.size !== this.#usage.size) throw new Error('invariant: usage disagrees with a recount');
    for (const [owner, u] of usage) {
      const held = this.#usage.get(owner);
      if (held?.bytes !== u.bytes || held.files !== u.files) throw new Error(`invariant: usage of ${owner} is ${JSON.stringify(held)}, recount ${JSON.stringify(u)}`);
    }
    if (this.#grants.all().length !== this.#grantCount) throw new Error('invariant: grant count disagrees with the grants');
    for (const [id, n] of recount) if (this.#refs.get(id) !== n) throw new Error(`invariant: refcount of ${id} is ${this.#refs.get(id)}, recount ${n}`);
    if (this.#sessions.size > this.#maxSessions) throw new Error('invariant: too many sessions');
  }

  // ---- internals ----

  /** The ancestors of `path` that do not exist yet, top-down; refuses when not `parents`. */
  #missingAncestors(path: string, parents: boolean): string[] {
    const missing: string[] = [];
    for (let dir = parentOf(path); ; dir = parentOf(dir)) {
      const e = this.#entries.get(dir);
      if (e) {
        if (e.kind !== 'dir') throw new DfsError('ERR_NOT_DIR', `${dir} is not a directory`);
        break;
      }
      missing.unshift(dir);
    }
    if (missing.length > 0 && !parents) throw new DfsError('ERR_NOT_FOUND', `${missing[0]}: no such directory`);
    return missing;
  }

  /** `path` and everything below it, parents before children. */
  #subtree(path: string): string[] {
    const out = [path];
    for (let i = 0; i < out.length; i++) {
      const names = this.#children.get(out[i]!);
      if (names) for (const n of names) out.push(joinPath(out[i]!, n));
    }
    return out;
  }

  #insert(path: string, entry: Entry): void {
    this.#entries.set(path, entry);
    if (path !== ROOT) this.#charge(entry, 1);
    if (entry.kind === 'dir') this.#children.set(path, []);
    const siblings = this.#children.get(parentOf(path))!;
    const name = baseName(path);
    siblings.splice(upperBound(siblings, name), 0, name);
  }

  #remove(path: string): void {
    const entry = this.#entries.get(path);
    if (entry && path !== ROOT) this.#charge(entry, -1);
    this.#entries.delete(path);
    this.#children.delete(path);
    const siblings = this.#children.get(parentOf(path));
    if (siblings) {
      const at = upperBound(siblings, baseName(path)) - 1;
      if (siblings[at] === baseName(path)) siblings.splice(at, 1);
    }
  }

  #addRefs(manifest: Manifest): void {
    for (const [id] of manifest.chunks) this.#refs.set(id, (this.#refs.get(id) ?? 0) + 1);
  }

  /** Drops a manifest's references; returns the chunks no manifest references any more. */
  #dropRefs(manifest: Manifest): string[] {
    const freed: string[] = [];
    for (const [id] of manifest.chunks) {
      const n = (this.#refs.get(id) ?? 0) - 1;
      if (n < 0) throw new Error(`refcount of ${id} below zero`);
      if (n === 0) {
        this.#refs.delete(id);
        freed.push(id);
      } else {
        this.#refs.set(id, n);
      }
    }
    return freed;
  }
}

/**
 * Checks snapshot records one at a time, as they stream in, without touching any MetaState: a
 * snapshot from a peer or from disk is refused whole (DfsError ERR_IO) before anything is
 * written or restored. Accepted records come back in canonical form (known fields only, in the
 * order snapshotRecords writes them), so what MetaState.restore builds from them hashes the same
 * as the state that wrote them. Checks: one version 1 header first; then entries strictly in
 * path order, "/" first, canonical paths whose parent is a directory already seen, valid
 * manifests; then nodes by increasing id; then users by increasing name; then grants by path
 * (canonical paths, one per principal and path); then at most `maxSessions` distinct client
 * sessions. The limits are those apply takes (src/meta/envelope.ts), so whatever applied also
 * snapshots and restores.
 */
export class SnapshotRecordChecker {
  readonly #maxSessions: number;
  /** 0: expecting the header; 1: entries; 2: nodes; 3: users; 4: grants; 5: sessions. */
  #phase = 0;
  #lastPath: string | undefined;
  #lastNode: string | undefined;
  #lastUser: string | undefined;
  #lastGrantPath: string | undefined;
  readonly #grantsOnPath = new Set<string>();
  #users = 0;
  #grants = 0;
  readonly #dirs = new Set<string>();
  readonly #sessions = new Set<string>();
  #records = 0;

  constructor(options: { maxSessions?: number } = {}) {
    this.#maxSessions = options.maxSessions ?? 10_000;
  }

  /** The record in canonical form; throws ERR_IO naming what is wrong. */
  check(value: unknown): SnapshotRecord {
    const at = this.#records++;
    const fail = (why: string): never => {
      throw new DfsError('ERR_IO', `invalid metadata snapshot: record ${at}: ${why}`);
    };
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('not an object');
    const r = value as Record<string, unknown>;
    if (this.#phase === 0) {
      if (r.t !== 'header' || r.version !== 1) return fail('the first record must be a version 1 header');
      if (!isCount(r.appliedIndex)) fail('header appliedIndex must be a non-negative integer');
      const settings = r.settings as Record<string, unknown> | null | undefined;
      if (typeof settings !== 'object' || settings === null || !Number.isSafeInteger(settings.replicationFactor) || (settings.replicationFactor as number) < 1) {
        fail('header settings must have a positive integer replicationFactor');
      }
      if (r.authKey !== undefined) {
        try {
          checkedAuthKey(r.authKey);
        } catch {
          fail('header authKey must be a base64 key');
        }
      }
      this.#phase = 1;
      const header = { t: 'header', version: 1, appliedIndex: r.appliedIndex as number, settings: { replicationFactor: settings!.replicationFactor as number } } as const;
      return r.authKey === undefined ? header : { ...header, authKey: r.authKey as string };
    }
    try {
      switch (r.t) {
        case 'entry':
          if (this.#phase !== 1) return fail('an entry after nodes or sessions');
          return this.#entry(r, fail);
        case 'node':
          if (this.#phase > 2) return fail('a node after users, grants or sessions');
          this.#phase = 2;
          return this.#node(r, fail);
        case 'user':
          if (this.#phase > 3) return fail('a user after grants or sessions');
          this.#phase = 3;
          return this.#user(r, fail);
        case 'grant':
          if (this.#phase > 4) return fail('a grant after sessions');
          this.#phase = 4;
          return this.#grant(r, fail);
        case 'session':
          this.#phase = 5;
          return this.#session(r, fail);
        case 'header':
          return fail('a second header');
        default:
          return fail(`unknown record kind ${JSON.stringify(r.t)}`);
      }
    } catch (err) {
      if (isDfsError(err, 'ERR_IO')) throw err;
      return fail(err instanceof Error ? err.message : String(err));
    }
  }

  /** Call after the last record: throws if the snapshot was incomplete. */
  finish(): void {
    if (this.#phase === 0) throw new DfsError('ERR_IO', 'invalid metadata snapshot: no header');
    if (!this.#dirs.has(ROOT)) throw new DfsError('ERR_IO', 'invalid metadata snapshot: no entry for /');
  }

  #entry(r: Record<string, unknown>, fail: (why: string) => never): SnapshotRecord {
    const path = r.path;
    if (typeof path !== 'string' || normalizePath(path) !== path) return fail('entry path is not canonical');
    if (this.#lastPath === undefined ? path !== ROOT : !(path > this.#lastPath)) return fail(`entry ${path} out of order (the first is /, then strictly by path)`);
    if (path !== ROOT && !this.#dirs.has(parentOf(path))) return fail(`entry ${path} has no parent directory`);
    this.#lastPath = path;
    const e = r.entry as Record<string, unknown> | null | undefined;
    if (typeof e !== 'object' || e === null) return fail(`entry ${path} has no entry`);
    const owner = checkedId(e.owner, 'owner');
    const mtimeMs = checkedTime(e.mtimeMs);
    if (e.kind === 'dir') {
      this.#dirs.add(path);
      return { t: 'entry', path, entry: { kind: 'dir', owner, mtimeMs } };
    }
    if (e.kind !== 'file' || path === ROOT) return fail(`entry ${path} is neither a directory nor a file`);
    const manifest = validateManifest(e.manifest);
    if (e.size !== manifest.size) fail(`entry ${path} size differs from its manifest's`);
    return { t: 'entry', path, entry: { kind: 'file', owner, mtimeMs, size: manifest.size, manifest } };
  }

  #node(r: Record<string, unknown>, fail: (why: string) => never): SnapshotRecord {
    const n = r.node as Record<string, unknown> | null | undefined;
    if (typeof n !== 'object' || n === null) return fail('node record has no node');
    const id = checkedId(n.id, 'node id');
    if (this.#lastNode !== undefined && !(id > this.#lastNode)) fail(`node ${id} out of order`);
    this.#lastNode = id;
    const addrs = n.addrs;
    if (!Array.isArray(addrs) || addrs.length > MAX_NODE_ADDRS || !addrs.every((a) => typeof a === 'string' && a.length > 0 && a.length <= MAX_ADDR_CHARS)) {
      fail(`node ${id} addrs must be 0..${MAX_NODE_ADDRS} strings of 1..${MAX_ADDR_CHARS} characters`);
    }
    if (!isCount(n.capacityBytes)) fail(`node ${id} capacityBytes must be a non-negative integer`);
    if (!NODE_STATES.includes(n.state as NodeState)) fail(`node ${id} has an unknown state`);
    if (n.name !== undefined && !(typeof n.name === 'string' && n.name.length > 0 && n.name.length <= MAX_NODE_NAME)) fail(`node ${id} name must be 1..${MAX_NODE_NAME} characters`);
    const node: NodeRecord = {
      id,
      ...(typeof n.name === 'string' ? { name: n.name } : {}),
      addrs: [...(addrs as string[])],
      capacityBytes: n.capacityBytes as number,
      state: n.state as NodeState,
      registeredAtMs: checkedTime(n.registeredAtMs),
      stateSinceMs: checkedTime(n.stateSinceMs),
    };
    return { t: 'node', node };
  }

  #user(r: Record<string, unknown>, fail: (why: string) => never): SnapshotRecord {
    const u = r.user as Record<string, unknown> | null | undefined;
    if (typeof u !== 'object' || u === null) return fail('user record has no user');
    const name = checkedUserName(u.name);
    if (this.#lastUser !== undefined && !(name > this.#lastUser)) fail(`user ${name} out of order`);
    this.#lastUser = name;
    if (++this.#users > MAX_USERS) fail(`more than ${MAX_USERS} users`);
    if (!isCount(u.gen)) fail(`user ${name} gen must be a non-negative integer`);
    const quota = u.quota === undefined ? undefined : (u.quota as Record<string, unknown> | null);
    if (quota !== undefined && (typeof quota !== 'object' || quota === null)) fail(`user ${name} quota must be an object`);
    const user: UserRecord = withQuota(
      {
        name,
        password: checkedPassword(u.password),
        roles: checkedRoles(u.roles),
        disabled: checkedBoolean(u.disabled, 'disabled'),
        gen: u.gen as number,
        createdAtMs: checkedTime(u.createdAtMs),
      },
      quota === undefined ? undefined : checkedQuota(quota!.maxBytes, quota!.maxFiles),
    );
    return { t: 'user', user };
  }

  #grant(r: Record<string, unknown>, fail: (why: string) => never): SnapshotRecord {
    const grant = parseGrant(r.grant);
    if (this.#lastGrantPath !== grant.path) {
      if (this.#lastGrantPath !== undefined && !(grant.path > this.#lastGrantPath)) fail(`grant on ${grant.path} out of order`);
      this.#lastGrantPath = grant.path;
      this.#grantsOnPath.clear();
    }
    if (this.#grantsOnPath.has(grant.principal)) fail(`two grants of ${grant.principal} on ${grant.path}`);
    this.#grantsOnPath.add(grant.principal);
    if (++this.#grants > MAX_GRANTS) fail(`more than ${MAX_GRANTS} grants`);
    return { t: 'grant', grant: { path: grant.path, principal: grant.principal, level: grant.level } };
  }

  #session(r: Record<string, unknown>, fail: (why: string) => never): SnapshotRecord {
    if (typeof r.clientId !== 'string' || r.clientId.length === 0 || r.clientId.length > MAX_CLIENT_ID_CHARS) {
      return fail(`clientId must be a string of 1..${MAX_CLIENT_ID_CHARS} characters`);
    }
    const clientId = r.clientId;
    if (this.#sessions.has(clientId)) fail(`client ${clientId} has two sessions`);
    this.#sessions.add(clientId);
    if (this.#sessions.size > this.#maxSessions) fail(`more than ${this.#maxSessions} sessions`);
    if (!Number.isSafeInteger(r.seq)) fail(`session of ${clientId} has no integer seq`);
    const res = r.result as Record<string, unknown> | null | undefined;
    if (typeof res !== 'object' || res === null || typeof res.ok !== 'boolean') return fail(`session of ${clientId} has no result`);
    let result: ApplyResult;
    if (res.ok) {
      // Only what apply could have stored: JSON a few levels deep (a deeper value would pass
      // here and then overflow the stack when the state is hashed or snapshotted again).
      if ('value' in res && !withinDepth(res.value, MAX_RESULT_DEPTH)) fail(`session of ${clientId} has a result nested deeper than ${MAX_RESULT_DEPTH}`);
      result = 'value' in res ? { ok: true, value: res.value } : { ok: true };
    } else {
      if (typeof res.code !== 'string' || !Object.hasOwn(ERROR_CODES, res.code) || typeof res.message !== 'string') {
        return fail(`session of ${clientId} has a malformed refusal`);
      }
      result = { ok: false, code: res.code as DfsError['code'], message: res.message };
    }
    return { t: 'session', clientId, seq: r.seq as number, result };
  }
}

/** Whether a JSON value is at most `maxDepth` arrays or objects deep (iterative: no recursion). */
function withinDepth(value: unknown, maxDepth: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= maxDepth) return false;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return true;
}

function checkedUserName(value: unknown): string {
  if (!isUserName(value)) throw new DfsError('ERR_INVALID_ARGUMENT', 'a user name has 1..64 letters, digits, "_", "." or "-", not starting with "." or "-"');
  return value;
}

function checkedPrincipal(value: unknown): string {
  if (typeof value === 'string' && value.startsWith('@') && isRole(value.slice(1))) return value;
  if (isUserName(value)) return value;
  throw new DfsError('ERR_INVALID_ARGUMENT', 'a principal is a user name or @admin, @writer, @reader');
}

/** A stored password: an argon2id PHC string (never a clear password). */
function checkedPassword(value: unknown): string {
  if (typeof value !== 'string' || value.length > 512 || parseStoredPassword(value) === undefined) {
    throw new DfsError('ERR_INVALID_ARGUMENT', 'a stored password must be an argon2id PHC string');
  }
  return value;
}

function checkedRoles(value: unknown): Role[] {
  if (!Array.isArray(value) || value.length > 3 || !value.every(isRole)) throw new DfsError('ERR_INVALID_ARGUMENT', 'roles are a list of admin, writer, reader');
  return canonicalRoles(value);
}

function checkedBoolean(value: unknown, what: string): boolean {
  if (typeof value !== 'boolean') throw new DfsError('ERR_INVALID_ARGUMENT', `${what} must be true or false`);
  return value;
}

function checkedAuthKey(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_AUTH_KEY_CHARS || !/^[A-Za-z0-9+/]+={0,2}$/.test(value)) {
    throw new DfsError('ERR_INVALID_ARGUMENT', 'the cluster key must be base64');
  }
  return value;
}

/** A quota from optional limits; undefined when both are absent (no quota). */
function checkedQuota(maxBytes: unknown, maxFiles: unknown): Quota | undefined {
  if ((maxBytes !== undefined && !isCount(maxBytes)) || (maxFiles !== undefined && !isCount(maxFiles))) {
    throw new DfsError('ERR_INVALID_ARGUMENT', 'quota limits must be non-negative integers');
  }
  if (maxBytes === undefined && maxFiles === undefined) return undefined;
  return { ...(maxBytes !== undefined ? { maxBytes } : {}), ...(maxFiles !== undefined ? { maxFiles } : {}) };
}

/** `user` with `quota` (or without one), in canonical field order. */
function withQuota(user: UserRecord, quota: Quota | undefined): UserRecord {
  const { quota: _old, ...rest } = user;
  const base: UserRecord = { name: rest.name, password: rest.password, roles: rest.roles, disabled: rest.disabled, gen: rest.gen, createdAtMs: rest.createdAtMs };
  return quota === undefined ? base : { ...base, quota };
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function refusal(code: DfsError['code'], message: string): ApplyResult {
  return { ok: false, code, message };
}

function checkedId(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_CHARS) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `${what} must be a string of 1..${MAX_ID_CHARS} characters`);
  }
  return value;
}

function checkedTime(value: unknown): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) throw new DfsError('ERR_INVALID_ARGUMENT', 'nowMs must be a non-negative integer');
  return value as number;
}

/** Index of the first name greater than `name` in a sorted array. */
function upperBound(names: readonly string[], name: string): number {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (names[mid]! <= name) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
