import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { DfsError } from '../../errors/index.ts';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger } from '../../log/index.ts';
import { markMasterNew, startMaster } from '../../master/index.ts';
import { IDENTITY_FILE_NAME, loadOrCreateIdentity } from '../../net/index.ts';
import type { CliIO } from '../io.ts';
import { parseBytes } from '../format.ts';
import { startStorageNode } from '../../node/index.ts';
import { type ClusterSecret, insecureWarning, type SecretOptions, serverSecret } from '../cluster-secret.ts';

/**
 * What a master or node creates is its own alone: data directories 0700, keys, chunk files,
 * LevelDB files and logs 0600, whatever mode the code creating them asks for. The bin sets this
 * before anything else (cli/entry.ts); set again here for callers of the command itself.
 */
export function restrictUmask(): void {
  try {
    process.umask(0o077);
  } catch {
    // a worker thread may not change the umask: the explicit modes are all that apply there
  }
}

/** The peer options for a server's secret: none, or the key and how it is checked. */
function secretPeerOptions(secret: ClusterSecret): { psk?: Uint8Array; secretMode?: ClusterSecret['secretMode'] } {
  return secret.psk ? { psk: secret.psk, secretMode: secret.secretMode } : {};
}

export interface MasterStartOptions extends SecretOptions {
  name?: string;
  dir?: string;
  listen?: string;
  peers?: string;
  snapshotEvery?: number;
  tickMs?: number;
  gcGraceMs?: number;
  suspectAfter?: string;
  deadAfter?: string;
  admitNodes?: string;
  adminPeers?: string;
  /** host:port for /metrics and the status page. */
  http?: string;
}

/** A duration option in milliseconds: a positive integer, or ERR_USAGE naming the flag. */
function msOption(value: unknown, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new DfsError('ERR_USAGE', `${flag} takes a positive number of milliseconds, not "${String(value)}"`);
  return n;
}

/** `dfs master init --dir D`: creates the master's identity and prints its peer id. */
export async function masterInitCommand(options: { dir?: string }, io: CliIO): Promise<void> {
  if (!options.dir) throw new DfsError('ERR_USAGE', 'dfs master init needs --dir DIR');
  const hasIdentity = await access(join(options.dir, IDENTITY_FILE_NAME)).then(() => true, () => false);
  if (!hasIdentity) await markMasterNew(options.dir); // a new master: it may bootstrap as a founding voter
  const peerId = peerIdFromPrivateKey(await loadOrCreateIdentity(options.dir)).toString();
  io.stdout.write(`${peerId}\n`);
}

/**
 * `dfs master start`: runs a master until SIGTERM or SIGINT. Prints one JSON line
 * {"event":"ready",...} on stdout once it serves, which `dfs cluster up` and tests wait for.
 */
export async function masterStartCommand(options: MasterStartOptions, io: CliIO): Promise<void> {
  if (!options.dir) throw new DfsError('ERR_USAGE', 'dfs master start needs --dir DIR');
  if (!options.listen) throw new DfsError('ERR_USAGE', 'dfs master start needs --listen MULTIADDR (e.g. /ip4/127.0.0.1/tcp/7001)');
  const peers = options.peers ? String(options.peers).split(',').map((s) => s.trim()).filter(Boolean) : [];
  const name = options.name ?? 'master';
  const secret = await serverSecret(options, io, 'dfs master start');
  restrictUmask();
  const logger = createLogger({ name: `dfs-master-${name}` });
  if (!secret.psk) {
    const warning = insecureWarning(`master ${name}`);
    io.stderr.write(`dfs: warning: ${warning}\n`);
    logger.warn({ insecure: true }, warning);
  }
  let failure: Error | undefined;
  let wake: () => void = () => {};
  const master = await startMaster({
    name,
    logger,
    // Persistence failed: the driver already stopped acting; this process exits (non-zero).
    onFailure: (err) => {
      failure = err;
      wake();
    },
    dir: options.dir,
    listen: String(options.listen).split(','),
    peers,
    ...secretPeerOptions(secret),
    ...(options.snapshotEvery !== undefined ? { snapshotEveryEntries: Number(options.snapshotEvery) } : {}),
    ...(options.tickMs !== undefined ? { tickMs: Number(options.tickMs) } : {}),
    ...(options.gcGraceMs !== undefined ? { gcGraceMs: Number(options.gcGraceMs) } : {}),
    ...timingOptions(options),
    ...(options.adminPeers ? { adminPeers: String(options.adminPeers).split(',').map((x) => x.trim()).filter(Boolean) } : {}),
    ...(options.http !== undefined ? { http: String(options.http) } : {}),
  });
  io.stdout.write(JSON.stringify({ event: 'ready', name: master.name, peerId: master.peerId, addrs: master.addrs, ...(master.httpAddress ? { http: master.httpAddress } : {}) }) + '\n');
  io.stderr.write(`master ${master.name} (${master.peerId}) serving on ${master.addrs.join(', ')}${master.httpAddress ? `; status page http://${master.httpAddress}/, metrics /metrics` : ''}\n`);
  await new Promise<void>((resolve) => {
    wake = resolve;
    if (failure) resolve();
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await master.stop().catch(() => {});
  if (failure) throw new DfsError('ERR_IO', `master ${name} stopped: its Raft log could not be persisted (${failure.message}); fix the disk, then start it again`);
}

/** --suspect-after, --dead-after, --admit-nodes, checked. */
function timingOptions(options: MasterStartOptions): { suspectAfterMs?: number; deadAfterMs?: number; admitNodes?: 'auto' | 'manual' } {
  const suspectAfterMs = msOption(options.suspectAfter, '--suspect-after');
  const deadAfterMs = msOption(options.deadAfter, '--dead-after');
  if (suspectAfterMs !== undefined && deadAfterMs !== undefined && deadAfterMs <= suspectAfterMs) {
    throw new DfsError('ERR_USAGE', `--dead-after (${deadAfterMs} ms) must be longer than --suspect-after (${suspectAfterMs} ms)`);
  }
  const admit = options.admitNodes;
  if (admit !== undefined && admit !== 'auto' && admit !== 'manual') throw new DfsError('ERR_USAGE', `--admit-nodes takes auto or manual, not "${String(admit)}"`);
  return {
    ...(suspectAfterMs !== undefined ? { suspectAfterMs } : {}),
    ...(deadAfterMs !== undefined ? { deadAfterMs } : {}),
    ...(admit !== undefined ? { admitNodes: admit } : {}),
  };
}

export interface NodeStartOptions extends SecretOptions {
  name?: string;
  dir?: string;
  listen?: string;
  masters?: string;
  capacity?: string;
  scrubInterval?: string;
  /** host:port for /metrics. */
  http?: string;
}

/** `dfs node start`: runs a storage node until SIGTERM or SIGINT; prints a ready JSON line. */
export async function nodeStartCommand(options: NodeStartOptions, io: CliIO): Promise<void> {
  if (!options.dir) throw new DfsError('ERR_USAGE', 'dfs node start needs --dir DIR');
  if (!options.listen) throw new DfsError('ERR_USAGE', 'dfs node start needs --listen MULTIADDR');
  if (!options.masters) throw new DfsError('ERR_USAGE', 'dfs node start needs --masters MA1,MA2,MA3');
  let capacityBytes: number | undefined;
  if (options.capacity !== undefined) {
    capacityBytes = parseBytes(String(options.capacity));
    if (capacityBytes === undefined) throw new DfsError('ERR_USAGE', `--capacity takes a size such as 10GiB, not "${options.capacity}"`);
  }
  const name = options.name ?? 'node';
  const secret = await serverSecret(options, io, 'dfs node start');
  restrictUmask();
  const logger = createLogger({ name: `dfs-node-${name}` });
  if (!secret.psk) {
    const warning = insecureWarning(`storage node ${name}`);
    io.stderr.write(`dfs: warning: ${warning}\n`);
    logger.warn({ insecure: true }, warning);
  }
  const scrubIntervalMs = msOption(options.scrubInterval, '--scrub-interval');
  const node = await startStorageNode({
    name,
    logger,
    ...(scrubIntervalMs !== undefined ? { scrubIntervalMs } : {}),
    dir: options.dir,
    listen: String(options.listen).split(','),
    masters: String(options.masters).split(',').map((s) => s.trim()).filter(Boolean),
    ...secretPeerOptions(secret),
    ...(capacityBytes !== undefined ? { capacityBytes } : {}),
    ...(options.http !== undefined ? { http: String(options.http) } : {}),
  });
  io.stdout.write(JSON.stringify({ event: 'ready', name: node.name, peerId: node.peerId, addrs: node.addrs, ...(node.httpAddress ? { http: node.httpAddress } : {}) }) + '\n');
  io.stderr.write(`storage node ${node.name} (${node.peerId}) serving on ${node.addrs.join(', ')}${node.httpAddress ? `; metrics http://${node.httpAddress}/metrics` : ''}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await node.stop();
}
