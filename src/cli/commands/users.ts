import { isRole, LEVELS, type Level, PRINCIPAL_PATTERN, type Role, ROLES, USER_NAME_PATTERN } from '../../auth/index.ts';
import { MetaClient } from '../../client/index.ts';
import { clusterKeyOf } from '../../cluster/index.ts';
import { DfsError } from '../../errors/index.ts';
import type { UserView } from '../../meta/index.ts';
import { type ClusterOption, findClientConfig, withClusterClient } from '../client-context.ts';
import { formatBytes, formatTable, parseBytes } from '../format.ts';
import type { CliIO } from '../io.ts';
import { OLD_PASSWORD_ENV, PASSWORD_ENV, readPassword } from '../password-input.ts';
import { deleteLogin, loadLogin, saveLogin, TOKEN_ENV } from '../token-store.ts';

/**
 * Users and permissions on the command line: login, logout, whoami, user administration, grants.
 * Passwords never come from argv (see password-input.ts); what the master decides is the master's:
 * these commands only ask, and print its answers.
 */

type Json = { json?: boolean };
type PasswordOptions = { passwordFile?: string | number };

function checkUserName(name: string | undefined, what: string): string {
  if (name === undefined || name === '') throw new DfsError('ERR_USAGE', `${what} needs a user name`);
  if (!USER_NAME_PATTERN.test(name)) throw new DfsError('ERR_USAGE', `"${name}" is not a user name: 1 to 64 letters, digits, "_", "." or "-", not starting with "." or "-"`);
  return name;
}

/** Roles from `--role a --role b`, `--role a,b` or positional arguments; "none" is the empty set. */
function parseRoles(values: readonly unknown[]): Role[] {
  const names = values.flatMap((v) => String(v).split(',')).map((s) => s.trim()).filter((s) => s !== '');
  if (names.length === 1 && names[0] === 'none') return [];
  const roles: Role[] = [];
  for (const name of names) {
    if (!isRole(name)) throw new DfsError('ERR_USAGE', `"${name}" is not a role: ${ROLES.join(', ')} (or none)`);
    if (!roles.includes(name)) roles.push(name);
  }
  return roles;
}

function rolesText(roles: readonly Role[]): string {
  return roles.length === 0 ? 'none' : roles.join(',');
}

function whenText(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
}

/** Refuses extra positional arguments without repeating them: one may be a password. */
function noExtra(rest: readonly unknown[] | undefined, usage: string): void {
  if (rest && rest.length > 0) {
    throw new DfsError('ERR_USAGE', `too many arguments (${rest.length} more than ${usage} takes; not shown, in case one is a password). A password never goes on the command line: use the prompt, --password-file FILE or ${PASSWORD_ENV}`);
  }
}

// ---------------------------------------------------------------------------------------------
// login, logout, whoami

/**
 * `dfs login [user]`: asks the masters for a token and saves it for this cluster (0600). The user
 * is the one named, else the one logged in here before, else $USER.
 */
export async function loginCommand(user: string | undefined, rest: readonly unknown[] | undefined, options: ClusterOption & PasswordOptions, io: CliIO): Promise<void> {
  noExtra(rest, 'dfs login [user]');
  const { config } = await findClientConfig(options.cluster, io);
  const clusterKey = clusterKeyOf(config.masters);
  const previous = await loadLogin(io.env, clusterKey).catch(() => undefined); // a damaged one is replaced
  const name = checkUserName(user ?? previous?.login.user ?? io.env.USER, 'dfs login');
  const password = await readPassword(io, { file: options.passwordFile, envName: PASSWORD_ENV, prompt: `password for ${name}: ` });
  const login = await withClusterClient(options, io, (_, meta) => meta.login(name, password), { anonymous: true });
  const path = await saveLogin(io.env, { version: 1, cluster: clusterKey, user: login.user, roles: [...login.roles], token: login.token, expiresAtMs: login.expiresAtMs, savedAtMs: Date.now() });
  io.stdout.write(`logged in as ${login.user} (roles: ${rolesText(login.roles)}) until ${whenText(login.expiresAtMs)}; token saved in ${path}\n`);
  if (io.env[TOKEN_ENV]) io.stderr.write(`dfs: warning: ${TOKEN_ENV} is set and beats this login until you unset it\n`);
}

/** `dfs logout [--everywhere]`: deletes this cluster's saved login; --everywhere first ends every token of yours. */
export async function logoutCommand(options: ClusterOption & { everywhere?: boolean }, io: CliIO): Promise<void> {
  const { config } = await findClientConfig(options.cluster, io);
  const clusterKey = clusterKeyOf(config.masters);
  if (options.everywhere) {
    const user = await withClusterClient(options, io, async (_, meta) => {
      const who = await meta.whoami();
      await meta.revokeTokens(who.user);
      return who.user;
    });
    io.stdout.write(`every login of ${user} ended, on every machine\n`);
  }
  const path = await deleteLogin(io.env, clusterKey);
  io.stdout.write(path ? `logged out: deleted ${path}\n` : 'no saved login for this cluster here\n');
  if (io.env[TOKEN_ENV]) io.stderr.write(`dfs: note: ${TOKEN_ENV} is still set; unset it too\n`);
}

/** `dfs whoami`: who the masters take you for. */
export async function whoamiCommand(options: ClusterOption & Json, io: CliIO): Promise<void> {
  const who = await withClusterClient(options, io, (_, meta) => meta.whoami());
  if (options.json) {
    io.stdout.write(JSON.stringify(who) + '\n');
    return;
  }
  const via = who.via === 'token' ? (who.expiresAtMs !== undefined ? `logged in until ${whenText(who.expiresAtMs)}` : 'logged in') : who.via === 'admin-key' ? "the cluster's admin key" : 'a master';
  io.stdout.write(`${who.user} (roles: ${rolesText(who.roles)}; ${via})\n`);
}

// ---------------------------------------------------------------------------------------------
// dfs user ...

export type UserOptions = ClusterOption & Json & PasswordOptions & { role?: unknown; oldPasswordFile?: string | number; bytes?: unknown; files?: unknown };

export const USER_ACTIONS = ['add', 'rm', 'passwd', 'disable', 'enable', 'list', 'roles', 'quota'] as const;

/** `dfs user add|rm|passwd|disable|enable|list|roles|quota ...`. */
export async function userCommand(action: string, args: readonly unknown[], options: UserOptions, io: CliIO): Promise<void> {
  const [first, ...rest] = args.map(String);
  switch (action) {
    case 'add':
      noExtra(rest, 'dfs user add NAME');
      return userAdd(checkUserName(first, 'dfs user add'), options, io);
    case 'rm':
      noExtra(rest, 'dfs user rm NAME');
      return simple(options, io, first, 'dfs user rm', (meta, name) => meta.removeUser(name), (name) => `removed user ${name}`);
    case 'disable':
      noExtra(rest, 'dfs user disable NAME');
      return simple(options, io, first, 'dfs user disable', (meta, name) => meta.setUserDisabled(name, true), (name) => `disabled ${name}: every request of theirs is refused until dfs user enable ${name}`);
    case 'enable':
      noExtra(rest, 'dfs user enable NAME');
      return simple(options, io, first, 'dfs user enable', (meta, name) => meta.setUserDisabled(name, false), (name) => `enabled ${name}`);
    case 'passwd':
      noExtra(rest, 'dfs user passwd [NAME]');
      return userPasswd(first === undefined ? undefined : checkUserName(first, 'dfs user passwd'), options, io);
    case 'list':
      noExtra(args, 'dfs user list');
      return userList(options, io);
    case 'roles': {
      const name = checkUserName(first, 'dfs user roles');
      if (rest.length === 0) throw new DfsError('ERR_USAGE', `dfs user roles ${name} needs the roles: ${ROLES.join(', ')} (several allowed), or none`);
      const roles = parseRoles(rest);
      await withClusterClient(options, io, (_, meta) => meta.setUserRoles(name, roles));
      io.stdout.write(`${name} has roles: ${rolesText(roles)}\n`);
      return;
    }
    case 'quota':
      noExtra(rest, 'dfs user quota NAME');
      return userQuota(checkUserName(first, 'dfs user quota'), options, io);
    default:
      throw new DfsError('ERR_USAGE', `dfs user takes ${USER_ACTIONS.join(', ')}, not "${action}"`);
  }
}

async function simple(options: UserOptions, io: CliIO, name: string | undefined, what: string, call: (meta: MetaClient, name: string) => Promise<void>, done: (name: string) => string): Promise<void> {
  const user = checkUserName(name, what);
  await withClusterClient(options, io, (_, meta) => call(meta, user));
  io.stdout.write(done(user) + '\n');
}

async function userAdd(name: string, options: UserOptions, io: CliIO): Promise<void> {
  const roles = parseRoles(options.role === undefined ? [] : Array.isArray(options.role) ? options.role : [options.role]);
  const password = await readPassword(io, { file: options.passwordFile, envName: PASSWORD_ENV, prompt: `password for the new user ${name}: `, confirm: true });
  await withClusterClient(options, io, (_, meta) => meta.addUser(name, password, roles));
  const hint = roles.length === 0 ? `; with no role ${name} may do nothing until granted (dfs grant PATH ${name} read|write|admin) or given one (dfs user roles ${name} ROLE)` : '';
  io.stdout.write(`added user ${name} (roles: ${rolesText(roles)})${hint}\n`);
}

/**
 * `dfs user passwd [NAME]`: your own password (asks the current one first), or, for an admin,
 * anyone's. After changing your own, logs you in again with the new one.
 */
async function userPasswd(name: string | undefined, options: UserOptions, io: CliIO): Promise<void> {
  await withClusterClient(options, io, async (peer, meta, cluster) => {
    const who = await meta.whoami();
    const target = name ?? who.user;
    const self = target === who.user && who.via === 'token';
    const oldPassword = self ? await readPassword(io, { file: options.oldPasswordFile, envName: OLD_PASSWORD_ENV, prompt: `current password for ${target}: ` }) : undefined;
    const password = await readPassword(io, { file: options.passwordFile, envName: PASSWORD_ENV, prompt: `new password for ${target}: `, confirm: true });
    await meta.setPassword(target, password, oldPassword);
    io.stdout.write(`password of ${target} changed\n`);
    // A password change may end the user's tokens; keep this machine logged in with a fresh one.
    if (self && cluster.token.source !== TOKEN_ENV) {
      // Without the old token: it may have just ended, and a login needs none.
      const login = await new MetaClient({ peer, masters: cluster.config.masters }).login(target, password);
      await saveLogin(io.env, { version: 1, cluster: cluster.clusterKey, user: login.user, roles: [...login.roles], token: login.token, expiresAtMs: login.expiresAtMs, savedAtMs: Date.now() });
    }
  });
}

function quotaText(quota: UserView['quota']): string {
  if (!quota || (quota.maxBytes === undefined && quota.maxFiles === undefined)) return '-';
  const parts: string[] = [];
  if (quota.maxBytes !== undefined) parts.push(formatBytes(quota.maxBytes));
  if (quota.maxFiles !== undefined) parts.push(`${quota.maxFiles} files`);
  return parts.join(', ');
}

async function userList(options: UserOptions, io: CliIO): Promise<void> {
  const users = await withClusterClient(options, io, (_, meta) => meta.listUsers());
  if (options.json) {
    io.stdout.write(JSON.stringify(users) + '\n');
    return;
  }
  const rows = [...users]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((u) => [u.name, rolesText(u.roles), u.disabled ? 'disabled' : 'active', formatBytes(u.usage.bytes), String(u.usage.files), quotaText(u.quota)]);
  io.stdout.write(formatTable(['USER', 'ROLES', 'STATE', 'USED', 'FILES', 'QUOTA'], rows, new Set([3, 4])));
}

/** A quota limit from a flag: a size / count, or "none" to lift it; undefined when not given. */
function limitOf(value: unknown, flag: string, parse: (text: string) => number | undefined): number | null | undefined {
  if (value === undefined) return undefined;
  const text = String(value);
  if (text === 'none' || text === 'unlimited') return null;
  const n = parse(text);
  if (n === undefined || n < 0) throw new DfsError('ERR_USAGE', `${flag} takes ${flag === '--bytes' ? 'a size such as 10GiB' : 'a whole number'}, or none; not "${text}"`);
  return n;
}

/**
 * `dfs user quota NAME [--bytes SIZE|none] [--files N|none]`: sets the limits given and keeps the
 * others; with neither flag, shows the user's quota and usage.
 */
async function userQuota(name: string, options: UserOptions, io: CliIO): Promise<void> {
  const maxBytes = limitOf(options.bytes, '--bytes', parseBytes);
  const maxFiles = limitOf(options.files, '--files', (t) => (/^\d+$/.test(t) && Number.isSafeInteger(Number(t)) ? Number(t) : undefined));
  await withClusterClient(options, io, async (_, meta) => {
    const current = (await meta.listUsers()).find((u) => u.name === name);
    if (!current) throw new DfsError('ERR_NOT_FOUND', `no user ${name}: see dfs user list`);
    if (maxBytes === undefined && maxFiles === undefined) {
      io.stdout.write(`${name}: quota ${quotaText(current.quota)}; using ${formatBytes(current.usage.bytes)} in ${current.usage.files} ${current.usage.files === 1 ? 'file' : 'files'}\n`);
      return;
    }
    const pick = (given: number | null | undefined, old: number | undefined): number | undefined => (given === null ? undefined : (given ?? old));
    const next = { maxBytes: pick(maxBytes, current.quota?.maxBytes), maxFiles: pick(maxFiles, current.quota?.maxFiles) };
    const quota = { ...(next.maxBytes !== undefined ? { maxBytes: next.maxBytes } : {}), ...(next.maxFiles !== undefined ? { maxFiles: next.maxFiles } : {}) };
    await meta.setQuota(name, quota);
    io.stdout.write(`${name}: quota ${quotaText(quota)}\n`);
  });
}

// ---------------------------------------------------------------------------------------------
// grant, revoke, acl

function checkPrincipal(principal: string): string {
  if (!PRINCIPAL_PATTERN.test(principal)) throw new DfsError('ERR_USAGE', `"${principal}" is neither a user name nor @role (${ROLES.map((r) => `@${r}`).join(', ')})`);
  return principal;
}

function checkLevel(level: string): Level {
  const found = LEVELS.find((l) => l === level);
  if (!found) throw new DfsError('ERR_USAGE', `"${level}" is not a level: ${LEVELS.join(', ')}`);
  return found;
}

/** `dfs grant PATH USER|@ROLE read|write|admin`. */
export async function grantCommand(path: string, principal: string, level: string, options: ClusterOption, io: CliIO): Promise<void> {
  const who = checkPrincipal(principal);
  const lvl = checkLevel(level);
  await withClusterClient(options, io, (_, meta) => meta.grant(path, who, lvl));
  io.stdout.write(`granted ${lvl} on ${path} to ${who}\n`);
}

/** `dfs revoke PATH USER|@ROLE [LEVEL]` (no level: every grant of that principal on PATH). */
export async function revokeCommand(path: string, principal: string, level: string | undefined, options: ClusterOption, io: CliIO): Promise<void> {
  const who = checkPrincipal(principal);
  const lvl = level === undefined ? undefined : checkLevel(level);
  await withClusterClient(options, io, (_, meta) => meta.revoke(path, who, lvl));
  io.stdout.write(`revoked ${lvl ?? 'every grant'} on ${path} from ${who}\n`);
}

/** `dfs acl PATH`: the path's owner and every grant that applies to it, its own and inherited. */
export async function aclCommand(path: string, options: ClusterOption & Json, io: CliIO): Promise<void> {
  const acl = await withClusterClient(options, io, (_, meta) => meta.acl(path));
  if (options.json) {
    io.stdout.write(JSON.stringify(acl) + '\n');
    return;
  }
  io.stdout.write(`${acl.path}: owner ${acl.owner ?? '-'}\n`);
  if (acl.grants.length === 0) {
    io.stdout.write('no grants here or above: role defaults apply (admin: everything, writer: write, reader: read)\n');
    return;
  }
  io.stdout.write(formatTable(['PATH', 'PRINCIPAL', 'LEVEL', 'INHERITED'], acl.grants.map((g) => [g.path, g.principal, g.level, g.inherited ? 'yes' : 'no'])));
}
