import { dirname, resolve } from 'node:path';
import { ADMIN_USER, type AdminBootstrap, CLIENT_CONFIG_FILE, clusterKeyOf, LocalCluster, readClusterSpec, stopDetachedCluster, SWARM_KEY_FILE } from '../../cluster/index.ts';
import { createSwarmKeyFile } from '../../net/index.ts';
import { insecureWarning, parseSecretMode, type SecretOptions, SWARM_KEY_ENV } from '../cluster-secret.ts';
import { DfsError } from '../../errors/index.ts';
import { formatTable } from '../format.ts';
import { commandName } from '../command-name.ts';
import { EXIT } from '../exit-codes.ts';
import { type CliIO, info, type OutputFlags } from '../io.ts';
import { addNamedCluster, listNamedClusters, loadUserConfig, removeNamedCluster, useNamedCluster } from '../named-clusters.ts';
import { loadLogin, saveLogin } from '../token-store.ts';

export interface ClusterUpOptions extends SecretOptions {
  dir?: string;
  masters?: number;
  nodes?: number;
  detach?: boolean;
  json?: boolean;
}

export const DEFAULT_CLUSTER_DIR = '.dfs-local';

/**
 * `dfs cluster init [--dir DIR]`: makes the cluster secret DIR/swarm.key (mode 0600; never over
 * an existing one) and says what to do with it.
 */
export async function clusterInitCommand(options: { dir?: string }, io: CliIO): Promise<void> {
  const path = resolve(options.dir ?? '.', SWARM_KEY_FILE);
  await createSwarmKeyFile(path);
  io.stdout.write(
    [
      `created the cluster secret ${path} (mode 0600)`,
      'copy it, keeping mode 0600, to every master, storage node and client host; anyone holding it can join the cluster.',
      'give it to each process:',
      `  dfs master start --swarm-key ${path} ...   (or ${SWARM_KEY_ENV}=${path})`,
      `  dfs node start --swarm-key ${path} ...`,
      `  clients: "swarmKey": "${path}" in dfs-client.json (a path relative to that file, or absolute), or --swarm-key / ${SWARM_KEY_ENV}`,
      '',
    ].join('\n'),
  );
}

/** Exit code of a `cluster up` interrupted (Ctrl-C) while it was starting: 128 + SIGINT. */
export const EXIT_INTERRUPTED = 130;

/**
 * `dfs cluster up`: a local cluster of real processes on loopback ports, with its own secret.
 * Ctrl-C (SIGINT) or SIGTERM at any moment leaves nothing running: while it starts, every
 * process started so far is stopped and it exits 130; once up (foreground), it stops the
 * cluster and exits 0; once up with --detach, it has returned already (stop with cluster down).
 */
export async function clusterUpCommand(options: ClusterUpOptions, io: CliIO): Promise<number> {
  const dir = resolve(options.dir ?? DEFAULT_CLUSTER_DIR);
  const dfs = commandName(io);
  if (options.swarmKey !== undefined) throw new DfsError('ERR_USAGE', `dfs cluster up makes and uses its own secret, ${resolve(dir, SWARM_KEY_FILE)}; --swarm-key is for master, node and client commands`);
  const insecure = options.insecure === true;
  if (insecure && options.secretMode !== undefined) throw new DfsError('ERR_USAGE', '--secret-mode needs a cluster secret; --insecure runs without one');
  const secretMode = parseSecretMode(options.secretMode);
  const size = await layoutSize(options, dir, dfs);
  if (insecure) io.stderr.write(`dfs: warning: ${insecureWarning(`the cluster in ${dir}`)}\n`);
  const cluster = new LocalCluster({ dir, ...size, detached: options.detach === true, insecure, ...(secretMode ? { secretMode } : {}) });
  const interrupt = onInterrupt();
  try {
    let admin: AdminLogin;
    try {
      await cluster.start({ signal: interrupt.signal });
      admin = await untilInterrupted(adminLogin(cluster, io), interrupt.signal);
    } catch (err) {
      // A failed or interrupted `cluster up` leaves nothing running, detached or not.
      await cluster.stop();
      if (!interrupt.signal.aborted) throw err;
      io.stderr.write(`dfs: interrupted: stopped every process of the cluster in ${dir}\n`);
      return EXIT_INTERRUPTED;
    }
    report(cluster, admin, dir, options, io);
    if (options.detach) {
      if (!options.json) io.stdout.write(`running in the background: ${dfs} status --cluster ${dir}; stop with: ${dfs} cluster down --cluster ${dir}\n`);
      return EXIT.ok;
    }
    if (!options.json) io.stdout.write('press Ctrl-C to stop\n');
    await interrupt.interrupted;
    if (!options.json) io.stdout.write('stopping...\n');
    await cluster.stop();
    return EXIT.ok;
  } finally {
    interrupt.dispose();
  }
}

function report(cluster: LocalCluster, admin: AdminLogin, dir: string, options: ClusterUpOptions, io: CliIO): void {
  const processes = [
    ...cluster.spec.masters.map((m) => ({ name: m.name, role: 'master', addr: m.addr, ...statusPageOf(cluster, m.name) })),
    ...(cluster.spec.nodes ?? []).map((n) => ({ name: n.name, role: 'storage node', addr: `/ip4/127.0.0.1/tcp/${n.port}` })),
  ];
  const clientConfig = resolve(dir, CLIENT_CONFIG_FILE);
  if (options.json) {
    io.stdout.write(JSON.stringify({ dir, clientConfig, swarmKey: cluster.swarmKeyPath ?? null, detached: options.detach === true, processes, admin }) + '\n');
    return;
  }
  io.stdout.write(formatTable(['PROCESS', 'ROLE', 'ADDRESS', 'STATUS PAGE'], processes.map((p) => [p.name, p.role, p.addr, 'statusPage' in p ? String(p.statusPage) : ''])));
  io.stdout.write(`\ncluster up in ${dir}; client config ${clientConfig}\n`);
  io.stdout.write(cluster.swarmKeyPath ? `cluster secret ${cluster.swarmKeyPath} (mode 0600; the client config names it)\n` : 'no cluster secret (--insecure)\n');
  io.stdout.write(adminText(admin, io));
}

/**
 * SIGINT and SIGTERM, caught for the whole of `cluster up`: the first aborts `signal` (and
 * resolves `interrupted`); later ones are ignored while the processes stop (each gets SIGKILL
 * after its grace period anyway). Without this, Ctrl-C would kill `cluster up` alone, and a
 * detached cluster's processes (their own process group: the terminal's Ctrl-C never reaches
 * them) would run on with nobody knowing their pids.
 */
function onInterrupt(): { signal: AbortSignal; interrupted: Promise<void>; dispose: () => void } {
  const controller = new AbortController();
  let wake: () => void = () => {};
  const interrupted = new Promise<void>((ok) => (wake = ok));
  const handler = (): void => {
    controller.abort();
    wake();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: controller.signal,
    interrupted,
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

/** `work`, or ERR_ABORTED as soon as `signal` aborts (work's own outcome is then ignored). */
async function untilInterrupted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  work.catch(() => {});
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, fail) => {
    onAbort = () => fail(new DfsError('ERR_ABORTED', 'interrupted'));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, aborted]);
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}

/**
 * The numbers of masters and storage nodes to start: a new layout takes --masters and --nodes
 * (default 3 and 5); an existing one is started as it is, and a --masters or --nodes that
 * differs from it is refused (the layout, its identities and its data are not resized).
 */
async function layoutSize(options: ClusterUpOptions, dir: string, dfs: string): Promise<{ masters: number; nodes: number }> {
  const masters = countOption(options.masters, '--masters');
  const nodes = countOption(options.nodes, '--nodes');
  if (masters !== undefined && ![1, 3, 5].includes(masters)) throw new DfsError('ERR_USAGE', `--masters takes 1, 3 or 5, not ${masters}`);
  const existing = await readClusterSpec(dir);
  if (!existing) return { masters: masters ?? 3, nodes: nodes ?? 5 };
  const has = { masters: existing.masters.length, nodes: existing.nodes?.length ?? 0 };
  const differs = [
    ...(masters !== undefined && masters !== has.masters ? [`--masters ${masters}`] : []),
    ...(nodes !== undefined && nodes !== has.nodes ? [`--nodes ${nodes}`] : []),
  ];
  if (differs.length > 0) {
    throw new DfsError(
      'ERR_USAGE',
      `the cluster in ${dir} has ${has.masters} masters and ${has.nodes} storage nodes, not ${differs.join(' and ')}: start it as it is (no --masters or --nodes), or start afresh (its data is lost): ${dfs} cluster down --cluster ${dir}, then remove ${dir}`,
    );
  }
  return has;
}

function countOption(value: unknown, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0 || n > 100) throw new DfsError('ERR_USAGE', `${flag} takes a whole number from 0 to 100, not "${String(value)}"`);
  return n;
}

export async function clusterDownCommand(options: { dir?: string }, io: CliIO): Promise<void> {
  const dir = resolve(options.dir ?? DEFAULT_CLUSTER_DIR);
  // Stopped in parallel: listed by name, masters first, whatever order they went in.
  const stopped = (await stopDetachedCluster(dir)).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  io.stdout.write(stopped.length ? `stopped ${stopped.join(', ')}\n` : 'nothing was running\n');
}

/** `dfs cluster add NAME PATH`: a named cluster from a client config (a file, or the directory holding it). */
export async function clusterAddCommand(args: readonly unknown[], options: OutputFlags, io: CliIO): Promise<void> {
  if (args.length !== 2) throw new DfsError('ERR_USAGE', `usage: ${commandName(io)} cluster add NAME PATH-TO-dfs-client.json (or the directory holding it)`);
  const [name, source] = args.map(String) as [string, string];
  const added = await addNamedCluster(io.env, name, source);
  if (options.json) io.stdout.write(JSON.stringify({ name, path: added.path, masters: added.config.masters }) + '\n');
  else info(io, options, `added cluster ${name} (${added.config.masters.length} masters) in ${dirname(added.path)}; make it the default with: ${commandName(io)} cluster use ${name}`);
}

/** `dfs cluster use NAME`: the cluster commands talk to when nothing else names one. */
export async function clusterUseCommand(args: readonly unknown[], options: OutputFlags, io: CliIO): Promise<void> {
  if (args.length !== 1) throw new DfsError('ERR_USAGE', `usage: ${commandName(io)} cluster use NAME`);
  const name = String(args[0]);
  const path = await useNamedCluster(io.env, name);
  if (options.json) io.stdout.write(JSON.stringify({ current: name, config: path }) + '\n');
  else info(io, options, `now using cluster ${name} (saved in ${path}); --cluster, DFS_CLUSTER and a dfs-client.json here or above still come first`);
}

/** `dfs cluster list`: the named clusters; the current one marked. */
export async function clusterListCommand(args: readonly unknown[], options: OutputFlags, io: CliIO): Promise<void> {
  if (args.length !== 0) throw new DfsError('ERR_USAGE', `usage: ${commandName(io)} cluster list`);
  const [clusters, { config }] = await Promise.all([listNamedClusters(io.env), loadUserConfig(io.env)]);
  const current = config.currentCluster;
  if (options.json) {
    for (const c of clusters) io.stdout.write(JSON.stringify({ name: c.name, masters: c.config.masters, current: c.name === current, path: c.path }) + '\n');
    return;
  }
  if (clusters.length === 0) {
    info(io, options, `no named clusters: add one with ${commandName(io)} cluster add NAME PATH-TO-dfs-client.json`);
    return;
  }
  io.stdout.write(formatTable(['NAME', 'MASTERS', 'CURRENT'], clusters.map((c) => [c.name, c.config.masters.join(','), c.name === current ? '*' : ''])));
}

/** `dfs cluster rm NAME`: forgets a named cluster (its copy of the client config and secret). */
export async function clusterRmCommand(args: readonly unknown[], options: OutputFlags, io: CliIO): Promise<void> {
  if (args.length !== 1) throw new DfsError('ERR_USAGE', `usage: ${commandName(io)} cluster rm NAME`);
  const name = String(args[0]);
  const { wasCurrent } = await removeNamedCluster(io.env, name);
  if (options.json) io.stdout.write(JSON.stringify({ removed: name, wasCurrent }) + '\n');
  else info(io, options, `removed cluster ${name}${wasCurrent ? '; no cluster is the default now' : ''}`);
}

/** The admin login `cluster up` reports: made now (with its password, shown once), or there before. */
export interface AdminLogin {
  readonly user: string;
  readonly created: boolean;
  /** Only when created now: printed once, stored nowhere. */
  readonly password?: string;
  /** Whether this machine holds a login for the cluster now, and where. */
  readonly loggedIn: boolean;
  readonly tokenFile?: string;
  readonly loggedInAs?: string;
}

/**
 * Makes the cluster's `admin` user the first time (through the admin key) and saves its login
 * for the local user, so the next command just works. On a cluster that already has one, the
 * saved login (if any) is kept and nothing is printed but how to log in.
 */
async function adminLogin(cluster: LocalCluster, io: CliIO): Promise<AdminLogin> {
  const made: AdminBootstrap = await cluster.bootstrapAdmin();
  const clusterKey = clusterKeyOf(cluster.masterAddrs);
  if (made.created) {
    const { login } = made;
    try {
      const tokenFile = await saveLogin(io.env, { version: 1, cluster: clusterKey, user: login.user, roles: [...login.roles], token: login.token, expiresAtMs: login.expiresAtMs, savedAtMs: Date.now() });
      return { user: ADMIN_USER, created: true, password: made.password, loggedIn: true, tokenFile, loggedInAs: login.user };
    } catch (err) {
      // The password is printed all the same: without it nobody could log in as admin.
      io.stderr.write(`dfs: warning: ${(err as Error).message}; log in with ${commandName(io)} login ${ADMIN_USER}\n`);
      return { user: ADMIN_USER, created: true, password: made.password, loggedIn: false };
    }
  }
  const saved = await loadLogin(io.env, clusterKey).catch(() => undefined); // damaged: log in again
  const live = saved !== undefined && saved.login.expiresAtMs > Date.now();
  return { user: ADMIN_USER, created: false, loggedIn: live, ...(live ? { tokenFile: saved.path, loggedInAs: saved.login.user } : {}) };
}

function adminText(admin: AdminLogin, io: CliIO): string {
  const dfs = commandName(io);
  if (admin.created && admin.loggedIn) {
    return [
      `created user ${admin.user} (role admin); admin password: ${admin.password} (shown once; change it with ${dfs} user passwd)`,
      `logged in as ${admin.user}: token saved in ${admin.tokenFile}`,
      '',
    ].join('\n');
  }
  if (admin.created) return `created user ${admin.user} (role admin); admin password: ${admin.password} (shown once; change it with ${dfs} user passwd)\n`;
  if (admin.loggedIn) return `user ${admin.user} exists; logged in as ${admin.loggedInAs} (token in ${admin.tokenFile})\n`;
  return `user ${admin.user} exists (its password was shown by the first dfs cluster up of this directory): log in with ${dfs} login ${admin.user}\n`;
}

/** A master's status page and metrics, as it reported them when it became ready. */
function statusPageOf(cluster: LocalCluster, name: string): { statusPage: string } | Record<string, never> {
  try {
    const http = cluster.readyInfo(name).http;
    return http ? { statusPage: `http://${http}/` } : {};
  } catch {
    return {};
  }
}
