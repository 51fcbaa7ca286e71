import { DfsError } from '../errors/index.ts';
import { isWithin, normalizePath, parentOf, ROOT } from '../meta/paths.ts';
import { schema } from '../net/schema.ts';
import type { Infer } from '../net/schema.ts';
import { ROLES, USER_NAME_PATTERN } from './identity.ts';
import type { Identity } from './identity.ts';

/**
 * Who may do what: roles, per-path grants, owners. Pure: every answer comes from the identity and
 * a `PolicyView` of the replicated state, so a revoke applies to the very next call.
 *
 * THE MODEL
 * 1. The `admin` role may do everything: any path at any level, plus cluster administration
 *    (users, nodes, settings: the `admin` action), which nothing else allows.
 * 2. A grant {path, principal, level} gives `level` (read < write < admin; a higher level includes
 *    the lower ones) on `path` and everything below it, to one user (`alice`) or to everyone with
 *    a role (`@writer`). All grants on a path and its ancestors count; the highest level wins.
 * 3. Role defaults: `writer` has write and `reader` has read on every path that is not restricted.
 *    A path is RESTRICTED when it or a directory above it carries at least one explicit grant:
 *    there the role defaults stop applying and only grants, owners and the admin role count. So a
 *    plain cluster with no grants works by roles alone, and `dfs grant /private alice write` makes
 *    /private alice's (and admins') only; to share it again, grant `@reader read` or `@writer write`
 *    on it. A grant on "/" restricts the whole tree.
 * 4. The owner of an entry (who created it) has admin on it and below, so may read, write and grant
 *    there. Ownership never restricts anything. The root "/" has no owner for this purpose (the
 *    state names it "root"): only admins and grants rule it.
 * 5. A user with no role and no grant may do nothing.
 *
 * Actions and the level they need: read → read, write → write, grant (grant, revoke, read a
 * path's grants) → admin on the path, admin (users, nodes, settings) → the admin role.
 * Operations map onto actions in `checksFor`.
 */
export const LEVELS = ['read', 'write', 'admin'] as const;
export type Level = (typeof LEVELS)[number];
export const ACTIONS = ['read', 'write', 'grant', 'admin'] as const;
export type Action = (typeof ACTIONS)[number];

const RANK: Readonly<Record<Level, number>> = { read: 1, write: 2, admin: 3 };

/** A user name, or '@' and a role. */
export const PRINCIPAL_PATTERN = new RegExp(`^(?:${USER_NAME_PATTERN.source.slice(1, -1)}|@(?:${ROLES.join('|')}))$`);

export const grantSchema = schema.object({
  path: schema.string({ minLength: 1, maxLength: 4096 }),
  principal: schema.string({ pattern: PRINCIPAL_PATTERN }),
  level: schema.oneOf(LEVELS),
});
export type Grant = Infer<typeof grantSchema>;

/**
 * Parses a grant (from the wire or the state): the schema, then the path must already be
 * canonical (normalizePath's form). Throws ERR_PROTOCOL / ERR_INVALID_PATH.
 */
export function parseGrant(input: unknown): Grant {
  const g = grantSchema.parse(input);
  if (normalizePath(g.path) !== g.path) throw new DfsError('ERR_INVALID_PATH', `grant path "${g.path}" is not canonical (want "${normalizePath(g.path)}")`);
  return g;
}

/** The slice of the metadata state that authorisation reads. */
export interface PolicyView {
  /** The explicit grants set on exactly `path` (canonical), not those inherited from above. */
  grantsAt(path: string): readonly Grant[];
  /** The user who owns the entry at `path`, or undefined when there is none. */
  ownerOf(path: string): string | undefined;
  /**
   * Paths strictly below `path` that carry explicit grants. Optional: when present, removing or
   * moving a directory also needs write on each of them (so a restricted subtree cannot be
   * deleted or moved out from under its grants by someone who may not write it).
   */
  grantedPathsBelow?(path: string): Iterable<string>;
}

export type Decision = { readonly allowed: true; readonly via: string } | { readonly allowed: false; readonly reason: string };

function principalMatches(principal: string, identity: Identity): boolean {
  return principal.startsWith('@') ? identity.roles.some((r) => `@${r}` === principal) : principal === identity.user;
}

interface Effective {
  level: Level | undefined;
  via: string;
  /** The nearest path (this one or above) with explicit grants, if any. */
  restrictedAt: string | undefined;
}

/** The level `identity` has on canonical `path` by grants, ownership and role defaults (not the admin role). */
function effectiveLevel(identity: Identity, path: string, view: PolicyView): Effective {
  const out: Effective = { level: undefined, via: '', restrictedAt: undefined };
  const raise = (level: Level, via: string): void => {
    if (out.level === undefined || RANK[level] > RANK[out.level]) {
      out.level = level;
      out.via = via;
    }
  };
  for (let p = path; ; p = parentOf(p)) {
    // Owning a directory gives admin below it only down to the nearest path with explicit
    // grants: whoever happened to create a shared parent (`mkdir -p /home/alice` makes alice
    // the owner of /home) must not override a restriction someone set lower down.
    if (p !== ROOT && out.restrictedAt === undefined && view.ownerOf(p) === identity.user) raise('admin', `owner of ${p}`);
    const grants = view.grantsAt(p);
    if (grants.length > 0 && out.restrictedAt === undefined) out.restrictedAt = p;
    for (const g of grants) if (principalMatches(g.principal, identity)) raise(g.level, `grant ${g.level} on ${p} to ${g.principal}`);
    if (p === ROOT) break;
  }
  if (out.restrictedAt === undefined) {
    if (identity.roles.includes('writer')) raise('write', 'role writer');
    if (identity.roles.includes('reader')) raise('read', 'role reader');
  }
  return out;
}

/** The level `action` needs on a path; undefined for `admin`, which needs the admin role. */
export function levelFor(action: Action): Level | undefined {
  return action === 'read' ? 'read' : action === 'write' ? 'write' : action === 'grant' ? 'admin' : undefined;
}

/**
 * May `identity` do `action` on `path`? `path` is normalised first (ERR_INVALID_PATH if it cannot
 * be). A refusal's reason names what is missing and how to get it.
 */
export function authorize(identity: Identity, action: Action, path: string, view: PolicyView): Decision {
  const p = normalizePath(path);
  if (identity.roles.includes('admin')) return { allowed: true, via: 'role admin' };
  const need = levelFor(action);
  if (need === undefined) {
    return { allowed: false, reason: `${identity.user} may not administer the cluster (users, nodes, settings): that needs the admin role; ask an admin to give ${identity.user} the admin role` };
  }
  const has = effectiveLevel(identity, p, view);
  if (has.level !== undefined && RANK[has.level] >= RANK[need]) return { allowed: true, via: has.via };
  const what = action === 'grant' ? 'grant on or read the grants of' : action;
  const current = has.level === undefined ? 'no access there' : `only ${has.level} there (${has.via})`;
  const restricted =
    has.restrictedAt === undefined
      ? ''
      : ` ${has.restrictedAt} has explicit grants, so role defaults do not apply${has.restrictedAt === p ? '' : ` below it`};`;
  return {
    allowed: false,
    reason:
      `${identity.user} may not ${what} ${p}: that needs ${need} on ${p} or a directory above it, and ${identity.user} has ${current};${restricted} ` +
      `an admin or an owner of ${p} can run \`dfs grant ${p} ${identity.user} ${need}\``,
  };
}

/** What a dfs operation asks of the policy. */
export type Operation =
  | { readonly op: 'stat' | 'ls' | 'get'; readonly path: string }
  | { readonly op: 'mkdir' | 'put' | 'rm'; readonly path: string }
  | { readonly op: 'mv'; readonly from: string; readonly to: string }
  | { readonly op: 'grant' | 'revoke' | 'acl'; readonly path: string }
  | { readonly op: 'users' | 'nodes' | 'settings' };

export interface Check {
  readonly action: Action;
  readonly path: string;
}

/**
 * The checks an operation needs, all of which must pass:
 * - stat, ls, get: read on the path (ls shows the names of all children, restricted or not).
 * - mkdir, put (commitFile), rm: write on the parent AND on the path itself. The path's own level
 *   is its parent's unless the path carries grants, so this only adds a refusal for restricted
 *   targets (a restricted file cannot be overwritten or removed by someone who may not write it).
 *   `authorizeOperation` adds write on every restricted path below an rm'd directory.
 * - mv: the same on both sides (from's parent and from, to's parent and to), plus write on every
 *   restricted path below `from`.
 * - grant, revoke, acl: the `grant` action (admin level) on the path.
 * - users (add, disable, roles, passwords of others), nodes (admission, drain, rm), settings: the
 *   `admin` action, i.e. the admin role.
 */
export function checksFor(operation: Operation): Check[] {
  switch (operation.op) {
    case 'stat':
    case 'ls':
    case 'get':
      return [{ action: 'read', path: normalizePath(operation.path) }];
    case 'mkdir':
    case 'put':
    case 'rm': {
      const p = normalizePath(operation.path);
      return dedupe([{ action: 'write', path: parentOf(p) }, { action: 'write', path: p }]);
    }
    case 'mv': {
      const from = normalizePath(operation.from);
      const to = normalizePath(operation.to);
      return dedupe([
        { action: 'write', path: parentOf(from) },
        { action: 'write', path: from },
        { action: 'write', path: parentOf(to) },
        { action: 'write', path: to },
      ]);
    }
    case 'grant':
    case 'revoke':
    case 'acl':
      return [{ action: 'grant', path: normalizePath(operation.path) }];
    case 'users':
    case 'nodes':
    case 'settings':
      return [{ action: 'admin', path: ROOT }];
  }
}

function dedupe(checks: Check[]): Check[] {
  return checks.filter((c, i) => checks.findIndex((d) => d.action === c.action && d.path === c.path) === i);
}

/** Runs `checksFor(operation)` (and the subtree checks of rm and mv); the first refusal wins. */
export function authorizeOperation(identity: Identity, operation: Operation, view: PolicyView): Decision {
  const checks = checksFor(operation);
  const top = operation.op === 'rm' ? operation.path : operation.op === 'mv' ? operation.from : undefined;
  if (top !== undefined && view.grantedPathsBelow !== undefined && !identity.roles.includes('admin')) {
    for (const below of view.grantedPathsBelow(normalizePath(top))) checks.push({ action: 'write', path: below });
  }
  let via = '';
  for (const check of checks) {
    const d = authorize(identity, check.action, check.path, view);
    if (!d.allowed) return d;
    via ||= d.via;
  }
  return { allowed: true, via };
}

/**
 * The grants of a namespace, keyed by path: a reference implementation of the grant half of
 * PolicyView, for the metadata state to hold (or copy) and for tests. Pure and deterministic
 * (grants on a path keep their insertion order). One grant per (path, principal): granting again
 * replaces the level.
 */
export class GrantTable {
  readonly #byPath = new Map<string, Grant[]>();

  /** Adds or replaces the grant of `grant.principal` on `grant.path`; false when nothing changed. */
  grant(grant: Grant): boolean {
    const g = parseGrant(grant);
    const list = this.#byPath.get(g.path) ?? [];
    const i = list.findIndex((x) => x.principal === g.principal);
    if (i >= 0 && list[i]?.level === g.level) return false;
    const next = { path: g.path, principal: g.principal, level: g.level };
    if (i >= 0) list[i] = next;
    else list.push(next);
    this.#byPath.set(g.path, list);
    return true;
  }

  /** Removes the grant of `principal` on exactly `path`; false when there was none. */
  revoke(path: string, principal: string): boolean {
    const p = normalizePath(path);
    const list = this.#byPath.get(p);
    const i = list?.findIndex((x) => x.principal === principal) ?? -1;
    if (list === undefined || i < 0) return false;
    list.splice(i, 1);
    if (list.length === 0) this.#byPath.delete(p);
    return true;
  }

  grantsAt(path: string): readonly Grant[] {
    return this.#byPath.get(path) ?? [];
  }

  *grantedPathsBelow(path: string): Iterable<string> {
    for (const p of this.#byPath.keys()) if (p !== path && isWithin(p, path)) yield p;
  }

  /** Drops every grant on `path` and below (after an rm). */
  removeWithin(path: string): number {
    let n = 0;
    for (const p of [...this.#byPath.keys()]) {
      if (isWithin(p, path)) {
        n += this.#byPath.get(p)?.length ?? 0;
        this.#byPath.delete(p);
      }
    }
    return n;
  }

  /**
   * Moves the grants on `from` and below to the same places under `to` (after an mv). A moved grant
   * replaces the same principal's grant already on the destination path; others there stay.
   */
  moveWithin(from: string, to: string): void {
    const src = normalizePath(from);
    const dst = normalizePath(to);
    if (src === ROOT || dst === ROOT || isWithin(dst, src)) throw new DfsError('ERR_INVALID_ARGUMENT', `cannot move grants from ${src} to ${dst}`);
    const moved: [string, Grant[]][] = [];
    for (const [p, list] of this.#byPath) if (isWithin(p, src)) moved.push([p, list]);
    for (const [p] of moved) this.#byPath.delete(p);
    for (const [p, list] of moved) {
      const target = dst + p.slice(src.length);
      for (const g of list) this.grant({ path: target, principal: g.principal, level: g.level });
    }
  }

  /** Every grant, paths in sorted order (for snapshots and `dfs acl`). */
  all(): Grant[] {
    return [...this.#byPath.keys()].sort().flatMap((p) => this.#byPath.get(p) ?? []);
  }
}

/** A PolicyView over a grant table and an owner lookup (the namespace's). */
export function policyView(grants: GrantTable, ownerOf: (path: string) => string | undefined): PolicyView {
  return {
    grantsAt: (p) => grants.grantsAt(p),
    ownerOf,
    grantedPathsBelow: (p) => grants.grantedPathsBelow(p),
  };
}
