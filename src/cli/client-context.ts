import { readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { MetaClient } from '../client/index.ts';
import { CLIENT_CONFIG_FILE, type ClientConfig, parseClientConfig } from '../cluster/index.ts';
import { DfsError, isDfsError } from '../errors/index.ts';
import { userInfo } from 'node:os';
import { access } from 'node:fs/promises';
import type { PrivateKey } from '@libp2p/interface';
import { ADMIN_IDENTITY_DIR } from '../cluster/index.ts';
import { createPeer, type DfsPeer, IDENTITY_FILE_NAME, loadOrCreateIdentity } from '../net/index.ts';
import { type ClusterSecret, clientSecret, type SecretOptions } from './cluster-secret.ts';
import type { CliIO } from './io.ts';

export interface ClusterOption extends SecretOptions {
  /** A cluster directory or a dfs-client.json file. */
  cluster?: string;
}

/**
 * Where the cluster is: --cluster (a directory or a dfs-client.json), else DFS_CLUSTER, else the
 * first dfs-client.json in the working directory or above it (what `dfs cluster up` writes).
 */
export async function findClientConfig(option: string | undefined, io: CliIO, cwd = process.cwd()): Promise<{ path: string; config: ClientConfig }> {
  const given = option ?? io.env.DFS_CLUSTER;
  const candidates: string[] = [];
  if (given) {
    const p = resolve(cwd, given);
    const isDir = await stat(p).then((s) => s.isDirectory(), () => false);
    candidates.push(isDir ? join(p, CLIENT_CONFIG_FILE) : p);
  } else {
    for (let dir = resolve(cwd); ; dir = dirname(dir)) {
      candidates.push(join(dir, CLIENT_CONFIG_FILE));
      candidates.push(join(dir, '.dfs-local', CLIENT_CONFIG_FILE));
      if (dirname(dir) === dir) break;
    }
  }
  for (const path of candidates) {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch {
      continue;
    }
    return { path, config: parseClientConfig(text, path) };
  }
  throw new DfsError(
    'ERR_NOT_FOUND',
    given ? `no ${CLIENT_CONFIG_FILE} at ${given}` : `no cluster found: start one with "dfs cluster up", or point to one with --cluster DIR or DFS_CLUSTER`,
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

/** Who writes are attributed to (not authenticated yet): $USER, else the OS account. */
export function currentUser(io: CliIO): string {
  if (io.env.USER) return io.env.USER;
  try {
    return userInfo().username;
  } catch {
    return 'anonymous';
  }
}

/**
 * Runs `fn` with a libp2p peer (holding the cluster secret) and a metadata client of the
 * cluster; always stops the peer. A client whose secret the masters do not share fails at once
 * with one line saying so, instead of retrying until the metadata client's deadline.
 */
export async function withClusterClient<T>(
  options: ClusterOption,
  io: CliIO,
  fn: (peer: DfsPeer, meta: MetaClient) => Promise<T>,
  as: { admin?: boolean } = {},
): Promise<T> {
  const { path, config } = await findClientConfig(options.cluster, io);
  const secret = await clientSecret(options, io, path, config);
  // Node administration is accepted only from the masters and the cluster's admin identity,
  // which a local cluster keeps beside its client config; other commands use a fresh identity.
  const adminKey = as.admin ? await readAdminIdentity(dirname(path)) : undefined;
  if (as.admin && !adminKey) {
    throw new DfsError('ERR_FORBIDDEN', `no admin identity beside ${path} (${ADMIN_IDENTITY_DIR}/${IDENTITY_FILE_NAME}): run this where the cluster's admin key is, or start the masters with --admin-peers naming yours`);
  }
  const peer = await createPeer({ ...(secret.psk ? { psk: secret.psk, secretMode: secret.secretMode } : {}), ...(adminKey ? { privateKey: adminKey } : {}) });
  try {
    const rejected = await handshakeRejections(peer, config.masters);
    if (rejected) throw wrongSecret(rejected, secret);
    return await fn(peer, new MetaClient({ peer, masters: config.masters, user: currentUser(io) }));
  } finally {
    await peer.stop();
  }
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
  return new DfsError(
    'ERR_PEER_UNREACHABLE',
    `cannot connect to the cluster: the secure handshake failed with ${rejected.failed.length} of ${rejected.of} masters, and none accepted it (${shown}${more}); the cluster secret may be wrong: this client used ${secret.source}`,
  );
}

export function withMetaClient<T>(options: ClusterOption, io: CliIO, fn: (client: MetaClient) => Promise<T>, as: { admin?: boolean } = {}): Promise<T> {
  return withClusterClient(options, io, (_, meta) => fn(meta), as);
}
