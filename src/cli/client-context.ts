import { stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { MetaClient } from '../client/index.ts';
import { CLIENT_CONFIG_FILE, type ClientConfig, clusterKeyOf, parseClientConfig } from '../cluster/index.ts';
import { DfsError, isDfsError } from '../errors/index.ts';
import { access } from 'node:fs/promises';
import type { PrivateKey } from '@libp2p/interface';
import { ADMIN_IDENTITY_DIR } from '../cluster/index.ts';
import { createPeer, type DfsPeer, IDENTITY_FILE_NAME, loadOrCreateIdentity } from '../net/index.ts';
import { type ClusterSecret, clientSecret, type SecretOptions } from './cluster-secret.ts';
import { commandName } from './command-name.ts';
import type { CliIO } from './io.ts';
import { currentNamedCluster, isClusterName, loadNamedCluster, readConfigText } from './named-clusters.ts';
import { loadLogin, type SavedLogin, TOKEN_ENV } from './token-store.ts';

export interface ClusterOption extends SecretOptions {
  /** A cluster directory or a dfs-client.json file. */
  cluster?: string;
  /**
   * --admin-key: speak with the admin key beside the client config (`admin/peer-key`), which
   * the masters take as user admin (--admin-peers); how the first admin user of a cluster is made.
   */
  adminKey?: boolean;
}

/**
 * Where the cluster is, first match wins: --cluster, else DFS_CLUSTER (either one a directory, a
 * dfs-client.json, or the name of a cluster added with `dfs cluster add`; a path that exists
 * beats a name), else the first dfs-client.json in the working directory or above it (what
 * `dfs cluster up` writes), else the current named cluster (`dfs cluster use`).
 */
export async function findClientConfig(option: string | undefined, io: CliIO, cwd = process.cwd()): Promise<{ path: string; config: ClientConfig }> {
  const given = option ?? io.env.DFS_CLUSTER;
  if (given) return givenClientConfig(given, option !== undefined ? '--cluster' : 'DFS_CLUSTER', io, cwd);
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    for (const path of [join(dir, CLIENT_CONFIG_FILE), join(dir, '.dfs-local', CLIENT_CONFIG_FILE)]) {
      const text = await readConfigText(path);
      if (text !== undefined) return { path, config: parseClientConfig(text, path) };
    }
    if (dirname(dir) === dir) break;
  }
  const current = await currentNamedCluster(io.env);
  if (current) return { path: current.path, config: current.config };
  const dfs = commandName(io);
  throw new DfsError(
    'ERR_NOT_FOUND',
    `no cluster found: start one with "${dfs} cluster up", or point to one with --cluster DIR|NAME, DFS_CLUSTER or "${dfs} cluster use NAME"`,
  );
}

/** The cluster --cluster or DFS_CLUSTER names: a path (directory or file) if one exists, else a named cluster. */
async function givenClientConfig(given: string, from: string, io: CliIO, cwd: string): Promise<{ path: string; config: ClientConfig }> {
  const p = resolve(cwd, given);
  const kind = await stat(p).then((s) => (s.isDirectory() ? 'dir' : 'file'), () => undefined);
  if (kind !== undefined) {
    const path = kind === 'dir' ? join(p, CLIENT_CONFIG_FILE) : p;
    const text = await readConfigText(path);
    if (text !== undefined) return { path, config: parseClientConfig(text, path) };
  } else if (isClusterName(given)) {
    const named = await loadNamedCluster(io.env, given);
    if (named) return { path: named.path, config: named.config };
  }
  throw new DfsError(
    'ERR_NOT_FOUND',
    `no ${CLIENT_CONFIG_FILE} at ${given} (${from})${isClusterName(given) ? ` and no cluster named ${given} (see ${commandName(io)} cluster list)` : ''}`,
  );
}

/** The admin identity beside a client config (`admin/peer-key`), if there is one. */
async function readAdminIdentity(configDir: string): Promise<PrivateKey | undefined> {
  const dir = join(configDir, ADMIN_IDENTITY_DIR);
  const exists = await access(join(dir, IDENTITY_FILE_NAME)).then(
    () => true,
    () => false,
  );
  return exists ? loadOrCreateIdentity(dir) : undefined;
}

/** What every refused login prints: one line, and what to do (`dfs login`, named as the user runs dfs). */
export function notLoggedInText(io: Pick<CliIO, 'env' | 'argv1'>): string {
  return `not logged in (or your login expired): run ${commandName(io)} login`;
}

/** The token a command sends, and where it came from (for messages). */
export interface ClientToken {
  readonly token?: string;
  /** `DFS_TOKEN`, the saved login's path, or undefined when there is none. */
  readonly source?: string;
  /** The saved login, when the token came from one. */
  readonly saved?: SavedLogin;
}

/**
 * The token for the cluster `clusterKey`: DFS_TOKEN when set, else the saved login (see
 * token-store.ts). A saved login past its expiry is not sent (the master would refuse it; the
 * command then runs anonymously and, if it needs a login, says so). A damaged saved login is an
 * error telling the user to log in again.
 */
export async function clientToken(io: CliIO, clusterKey: string, nowMs: number = Date.now()): Promise<ClientToken> {
  const fromEnv = io.env[TOKEN_ENV];
  if (fromEnv) return { token: fromEnv, source: TOKEN_ENV };
  const saved = await loadLogin(io.env, clusterKey);
  if (!saved) return {};
  if (saved.login.expiresAtMs <= nowMs) return { source: saved.path, saved: saved.login };
  return { token: saved.login.token, source: saved.path, saved: saved.login };
}

/** How a command talks to the cluster. */
export interface ClientAs {
  /** Use the cluster's admin key when one is beside the client config (node administration). */
  readonly admin?: boolean;
  /**
   * Send no token and report a refused login as the master words it (dfs login, whose own
   * "wrong password" must not read as "not logged in"). A damaged saved login is no error then.
   */
  readonly anonymous?: boolean;
}

/** Where the cluster is, for commands that keep a login per cluster. */
export interface ClusterContext {
  readonly configPath: string;
  readonly config: ClientConfig;
  /** clusterKeyOf(config.masters): the name of this cluster's saved login. */
  readonly clusterKey: string;
  /** The token sent with every request, and its source. */
  readonly token: ClientToken;
}

/**
 * Runs `fn` with a libp2p peer (holding the cluster secret) and a metadata client of the
 * cluster; always stops the peer. A client whose secret the masters do not share fails at once
 * with one line saying so, instead of retrying until the metadata client's deadline. Every
 * request carries the user's token (DFS_TOKEN, else the saved login for this cluster); a request
 * the masters refuse for want of a valid login ends in one line: notLoggedInText.
 */
export async function withClusterClient<T>(
  options: ClusterOption,
  io: CliIO,
  fn: (peer: DfsPeer, meta: MetaClient, cluster: ClusterContext) => Promise<T>,
  as: ClientAs = {},
): Promise<T> {
  const { path, config } = await findClientConfig(options.cluster, io);
  const secret = await clientSecret(options, io, path, config);
  const clusterKey = clusterKeyOf(config.masters);
  // Read before connecting: a damaged saved login is reported at once, not after a dial.
  const token = as.anonymous ? {} : await clientToken(io, clusterKey);
  // Node administration is also accepted from the cluster's admin key, which a local cluster
  // keeps beside its client config; without one the user's login must have the admin role.
  const adminKey = as.admin || options.adminKey ? await readAdminIdentity(dirname(path)) : undefined;
  if (options.adminKey && !adminKey) {
    throw new DfsError('ERR_NOT_FOUND', `--admin-key: no admin key at ${join(dirname(path), ADMIN_IDENTITY_DIR, IDENTITY_FILE_NAME)}; make one with ${commandName(io)} master init --dir ${join(dirname(path), ADMIN_IDENTITY_DIR)} and give the peer id it prints to every master's --admin-peers`);
  }
  const peer = await createPeer({ ...(secret.psk ? { psk: secret.psk, secretMode: secret.secretMode } : {}), ...(adminKey ? { privateKey: adminKey } : {}) });
  try {
    const rejected = await handshakeRejections(peer, config.masters);
    if (rejected) throw wrongSecret(rejected, secret);
    const meta = new MetaClient({ peer, masters: config.masters, ...(token.token !== undefined ? { token: token.token } : {}) });
    return await fn(peer, meta, { configPath: path, config, clusterKey, token });
  } catch (err) {
    if (!as.anonymous && (isDfsError(err, 'ERR_UNAUTHENTICATED') || isDfsError(err, 'ERR_TOKEN_EXPIRED'))) throw notLoggedIn(err, token, io);
    throw err;
  } finally {
    await peer.stop();
  }
}

function notLoggedIn(err: DfsError, token: ClientToken, io: CliIO): DfsError {
  // DFS_TOKEN beats a saved login: a fresh `dfs login` would not help while it is set.
  const note = token.source === TOKEN_ENV ? ` (${TOKEN_ENV} is set and beats a saved login: unset it or give a valid token)` : '';
  return new DfsError(err.code, `${notLoggedInText(io)}${note}`, { cause: err });
}

/** Nobody serves it: a dial for it succeeds exactly when the connection (and its handshake) did. */
const PROBE_PROTOCOL = '/dfs/probe/0.0.0';
const PROBE_TIMEOUT_MS = 5_000;

/**
 * Connects to every master at once. Resolves undefined as soon as one connection opens (it is
 * kept, and the metadata client uses it), or when none opened but none refused our handshake
 * either (masters down: the command reports that its own way). Resolves the failures when no
 * master accepted the handshake and at least one refused it: with Noise bound to the cluster
 * secret (or pnet), a peer with another secret fails the handshake within a round trip, which
 * tells a wrong secret apart from a master that is down or slow.
 */
async function handshakeRejections(peer: DfsPeer, masters: readonly string[]): Promise<{ failed: string[]; of: number } | undefined> {
  const failed: string[] = [];
  let connected = false;
  await new Promise<void>((done) => {
    let pending = masters.length;
    const settle = (): void => {
      if (--pending === 0) done();
    };
    for (const addr of masters) {
      peer.dialProtocol(addr, PROBE_PROTOCOL, { timeoutMs: PROBE_TIMEOUT_MS }).then(
        (stream) => {
          stream.abort(new Error('probe done'));
          connected = true;
          done();
        },
        (err: unknown) => {
          // The master does not speak the probe: the connection, and so the handshake, worked.
          if (isDfsError(err, 'ERR_PROTOCOL')) {
            connected = true;
            done();
          } else if (handshakeFailed(err)) {
            failed.push(`${addr}: ${oneLine((err as Error).message).replace(`cannot reach ${addr}: `, '')}`);
          }
          settle();
        },
      );
    }
    if (masters.length === 0) done();
  });
  return !connected && failed.length > 0 ? { failed, of: masters.length } : undefined;
}

/** The connection was made but its encryption handshake failed (libp2p's EncryptionFailedError). */
function handshakeFailed(err: unknown): boolean {
  if (!isDfsError(err, 'ERR_PEER_UNREACHABLE')) return false;
  for (let cause: unknown = err.cause, depth = 0; cause instanceof Error && depth < 5; cause = cause.cause, depth++) {
    if (cause.name === 'EncryptionFailedError') return true;
  }
  return false;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function wrongSecret(rejected: { failed: string[]; of: number }, secret: ClusterSecret): DfsError {
  const shown = rejected.failed[0] ?? '';
  const more = rejected.failed.length > 1 ? `; ${rejected.failed.length - 1} more alike` : '';
  // No encryption protocol in common: a dfs from before or after a transport change.
  if (/could not negotiate/.test(shown)) {
    return new DfsError(
      'ERR_PEER_UNREACHABLE',
      `cannot connect to the cluster: the masters speak another encryption protocol than this client (${shown}${more}); client and cluster must run the same dfs version`,
    );
  }
  return new DfsError(
    'ERR_PEER_UNREACHABLE',
    `cannot connect to the cluster: the secure handshake failed with ${rejected.failed.length} of ${rejected.of} masters, and none accepted it (${shown}${more}); the cluster secret may be wrong: this client used ${secret.source}`,
  );
}

export function withMetaClient<T>(options: ClusterOption, io: CliIO, fn: (client: MetaClient) => Promise<T>, as: ClientAs = {}): Promise<T> {
  return withClusterClient(options, io, (_, meta) => fn(meta), as);
}
