import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, openSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { Role } from '../auth/index.ts';
import { DfsError, isDfsError } from '../errors/index.ts';
import { markMasterNew } from '../master/index.ts';
import { createPeer, createSwarmKeyFile, type DfsPeer, loadOrCreateIdentity, type PeerOptions, readSwarmKeyFile } from '../net/index.ts';
import { MetaClient, type MetaClientOptions } from '../client/index.ts';
import { CLIENT_CONFIG_FILE, type ClientConfig, type SecretMode, SWARM_KEY_FILE } from './client-config.ts';

export const CLUSTER_FILE = 'cluster.json';
const BIN = new URL('../../bin/dfs.js', import.meta.url).pathname;

export interface MasterSpec {
  readonly name: string;
  readonly dir: string;
  readonly port: number;
  readonly peerId: string;
  /** /ip4/127.0.0.1/tcp/<port>/p2p/<peer id> */
  readonly addr: string;
}

export interface NodeSpec {
  readonly name: string;
  readonly dir: string;
  readonly port: number;
}

export interface ClusterSpec {
  readonly version: 1;
  readonly masters: readonly MasterSpec[];
  readonly nodes?: readonly NodeSpec[];
  /** Process ids of a detached cluster (for `dfs cluster down`). */
  readonly pids?: Readonly<Record<string, number>>;
}

/** What a process printed when it became ready. */
export interface ReadyInfo {
  readonly name: string;
  readonly peerId: string;
  readonly addrs: readonly string[];
  /** host:port of its metrics (and, on a master, status page), when it serves them. */
  readonly http?: string;
}

/** Where a local cluster keeps the identity its operator administers nodes with. */
export const ADMIN_IDENTITY_DIR = 'admin';

/** The user `bootstrapAdmin` makes, and the random bytes of its password. */
export const ADMIN_USER = 'admin';
const ADMIN_PASSWORD_BYTES = 18;

/** What `bootstrapAdmin` did. */
export type AdminBootstrap =
  | { readonly created: false }
  | { readonly created: true; readonly password: string; readonly login: { token: string; user: string; roles: Role[]; expiresAtMs: number } };

export interface LocalClusterOptions {
  readonly dir: string;
  readonly masters?: number;
  /** Storage nodes (default 0). */
  readonly nodes?: number;
  /** Extra `dfs node start` flags. */
  readonly nodeArgs?: readonly string[];
  /** Extra `dfs master start` flags, e.g. a small snapshot threshold for tests. */
  readonly masterArgs?: readonly string[];
  /** Children outlive this process (dfs cluster up --detach). */
  readonly detached?: boolean;
  /** Bound on a master reporting ready. Default 20 s. */
  readonly readyTimeoutMs?: number;
  /**
   * Run without a cluster secret: every process starts with --insecure (and warns so in its
   * log) and the client config says `"insecure": true`. Default: a secret, `<dir>/swarm.key`.
   */
  readonly insecure?: boolean;
  /** How the processes and clients check the secret (default handshake). */
  readonly secretMode?: SecretMode;
  /**
   * New storage nodes get data at once ('auto', the default here) or wait for `dfs node admit`
   * ('manual', a real deployment's default). With 'manual', start() does not wait for nodes to
   * be live: start them with startNode and admit them.
   */
  readonly admitNodes?: 'auto' | 'manual';
}

/** A free TCP port on loopback, as the kernel hands one out. */
/**
 * A port to give a process that will listen on it later. Chosen below the kernel's ephemeral
 * range: a port from that range (what listen(0) hands out) can meanwhile become the source port
 * of some outgoing connection (the cluster's own processes dial each other while later ones
 * start), and the listener then fails with EADDRINUSE. Checked free by binding it.
 */
export async function freePort(): Promise<number> {
  const [low] = ephemeralPortRange();
  const floor = 10_000;
  for (let attempt = 0; attempt < 50 && low - floor > 1000; attempt++) {
    const port = floor + Math.floor(Math.random() * (low - floor));
    // Not yet listened on is not enough: a port handed out a moment ago may not be bound yet.
    if (!handedOut.has(port) && (await canListen(port))) {
      handedOut.add(port);
      return port;
    }
  }
  return listenOnAnyPort(); // no room below the range: the kernel's pick
}

/** Ports this process gave out (bounded: one per process of the clusters it made). */
const handedOut = new Set<number>();

function ephemeralPortRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low!, high!];
  } catch {
    // not Linux
  }
  return [49152, 65535]; // the IANA dynamic range, what most other systems use
}

function canListen(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise<boolean>((ok) => {
    server.once('error', () => ok(false));
    server.listen(port, '127.0.0.1', () => server.close(() => ok(true)));
  });
}

async function listenOnAnyPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok, fail) => server.once('error', fail).listen(0, '127.0.0.1', () => ok()));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((ok) => server.close(() => ok()));
  return port;
}

/** Directories a cluster makes: its processes' data (keys, chunks, Raft logs) is private. */
const PRIVATE_DIR_MODE = 0o700;
/** Files a cluster makes (cluster.json, the client config, process logs). */
const PRIVATE_FILE_MODE = 0o600;

async function writeJsonAtomically(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.tmp`;
  await writeFile(tmp, JSON.stringify(value, null, 2) + '\n', { mode: PRIVATE_FILE_MODE });
  await rename(tmp, path);
}

export async function readClusterSpec(dir: string): Promise<ClusterSpec | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, CLUSTER_FILE), 'utf8')) as ClusterSpec;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new DfsError('ERR_IO', `cannot read ${join(dir, CLUSTER_FILE)}: ${(err as Error).message}`);
  }
}

/**
 * A cluster of real dfs processes on loopback, in one directory: masters and storage nodes.
 * Used by `dfs cluster up` and by the integration and chaos tests. The first start creates the
 * cluster secret (`swarm.key`, 0600), every master's identity, and picks free ports; later
 * starts reuse them, so a cluster directory can be stopped and started again. Every process is
 * started with `--swarm-key <dir>/swarm.key` (or `--insecure` when asked), the client config
 * names the key, and directories are made 0700, files 0600.
 */
export class LocalCluster {
  readonly dir: string;
  readonly #o: LocalClusterOptions;
  #spec: ClusterSpec | undefined;
  readonly #procs = new Map<string, ChildProcess>();
  readonly #ready = new Map<string, ReadyInfo>();
  #swarmKey: Uint8Array | undefined;

  constructor(options: LocalClusterOptions) {
    this.dir = resolve(options.dir);
    this.#o = options;
  }

  get spec(): ClusterSpec {
    if (!this.#spec) throw new Error('local cluster not initialised');
    return this.#spec;
  }

  get masterAddrs(): string[] {
    return this.spec.masters.map((m) => m.addr);
  }

  /** The cluster secret file (`<dir>/swarm.key`); undefined for an insecure cluster. */
  get swarmKeyPath(): string | undefined {
    return this.#o.insecure ? undefined : join(this.dir, SWARM_KEY_FILE);
  }

  /** The cluster secret's bytes (a swarm key file), once `init` ran; undefined for an insecure cluster. */
  get swarmKey(): Uint8Array | undefined {
    return this.#swarmKey;
  }

  /**
   * Creates (or loads) the cluster's secret, layout, identities and ports, and (re)writes the
   * client config to match how this cluster runs (secret or not).
   */
  async init(): Promise<ClusterSpec> {
    await mkdir(this.dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    await this.#initSecret();
    const spec = (await readClusterSpec(this.dir)) ?? (await this.#create());
    this.#spec = spec;
    const client: ClientConfig = {
      masters: spec.masters.map((m) => m.addr),
      ...(this.#o.insecure ? { insecure: true } : { swarmKey: SWARM_KEY_FILE }),
      ...(this.#o.secretMode && !this.#o.insecure ? { secretMode: this.#o.secretMode } : {}),
    };
    await writeJsonAtomically(join(this.dir, CLIENT_CONFIG_FILE), client);
    return spec;
  }

  /** Loads `<dir>/swarm.key`, or makes it (0600) the first time. */
  async #initSecret(): Promise<void> {
    const path = this.swarmKeyPath;
    if (path === undefined) return;
    try {
      this.#swarmKey = await readSwarmKeyFile(path);
    } catch (err) {
      if (!isDfsError(err, 'ERR_NOT_FOUND')) throw err;
      this.#swarmKey = await createSwarmKeyFile(path);
    }
  }

  async #create(): Promise<ClusterSpec> {
    const count = this.#o.masters ?? 3;
    if (!(count === 1 || count === 3 || count === 5)) throw new DfsError('ERR_INVALID_ARGUMENT', 'a cluster has 1, 3 or 5 masters');
    const masters: MasterSpec[] = [];
    for (let i = 1; i <= count; i++) {
      const name = `m${i}`;
      const dir = join(this.dir, 'masters', name);
      await markMasterNew(dir); // a new master: its first start bootstraps the Raft group
      const peerId = peerIdFromPrivateKey(await loadOrCreateIdentity(dir)).toString();
      const port = await freePort();
      masters.push({ name, dir, port, peerId, addr: `/ip4/127.0.0.1/tcp/${port}/p2p/${peerId}` });
    }
    const nodes: NodeSpec[] = [];
    for (let i = 1; i <= (this.#o.nodes ?? 0); i++) {
      const dir = join(this.dir, 'nodes', `n${i}`);
      await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
      nodes.push({ name: `n${i}`, dir, port: await freePort() });
    }
    const spec: ClusterSpec = { version: 1, masters, nodes };
    await writeJsonAtomically(join(this.dir, CLUSTER_FILE), spec);
    return spec;
  }

  get nodeNames(): string[] {
    return (this.spec.nodes ?? []).map((n) => n.name);
  }

  /**
   * Starts every master and node; resolves when all report ready, a leader is elected and the
   * leader hears every node. `signal` (Ctrl-C in `dfs cluster up`) aborts the start: whatever
   * did start is stopped, nothing more is started, and the start rejects with ERR_ABORTED once
   * every process it made has exited. A detached cluster records each process's pid in
   * cluster.json as soon as it runs, so that even a start killed outright leaves `dfs cluster
   * down` able to stop what it made.
   */
  async start(options: { readonly signal?: AbortSignal } = {}): Promise<void> {
    const { signal } = options;
    if (signal?.aborted) throw abortedError();
    await this.init();
    this.#signal = signal;
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, fail) => {
      onAbort = () => fail(abortedError());
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    aborted.catch(() => {}); // raced below, or never settles
    const steps = this.#startAll(signal);
    try {
      await Promise.race([steps, aborted]);
    } catch (err) {
      // After an abort the steps still run to their end (each checks the signal): theirs is not the error to report.
      steps.catch(() => {});
      // What did start must not outlive a failed start.
      await this.stop();
      throw err;
    } finally {
      if (onAbort) signal?.removeEventListener('abort', onAbort);
      this.#signal = undefined;
    }
    if (this.#o.detached) await this.#recordPids();
  }

  async #startAll(signal: AbortSignal | undefined): Promise<void> {
    await Promise.all(this.spec.masters.map((m) => this.startMaster(m.name)));
    await this.#waitForLeader(this.#o.readyTimeoutMs ?? 20_000, signal);
    await Promise.all(this.nodeNames.map((n) => this.startNode(n)));
    if ((this.#o.admitNodes ?? 'auto') === 'auto') await this.waitForLiveNodes(this.nodeNames.length, undefined, signal);
  }

  /** The signal of the start under way: a process it would spawn after an abort is not spawned. */
  #signal: AbortSignal | undefined;

  async #waitForLeader(timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    await this.withClient(async (c) => {
      for (let pauseMs = 20; ; pauseMs = Math.min(pauseMs * 2, 200)) {
        if (signal?.aborted) throw abortedError();
        if ((await c.statusAll()).some((st) => st.status?.role === 'leader')) return;
        if (performance.now() > deadline) throw new DfsError('ERR_NO_QUORUM', `no leader elected within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, pauseMs));
      }
    });
  }

  /** Resolves once the leader hears `count` storage nodes (ERR_TIMEOUT otherwise). */
  async waitForLiveNodes(count: number, timeoutMs = this.#o.readyTimeoutMs ?? 20_000, signal?: AbortSignal): Promise<void> {
    if (count === 0) return;
    const deadline = performance.now() + timeoutMs;
    await this.withClient(async (c) => {
      for (let pauseMs = 50; ; pauseMs = Math.min(pauseMs * 2, 250)) {
        if (signal?.aborted) throw abortedError();
        const leader = (await c.statusAll()).find((s) => s.status?.role === 'leader')?.status;
        if ((leader?.liveNodes ?? 0) >= count) return;
        if (performance.now() > deadline) throw new DfsError('ERR_TIMEOUT', `the leader hears ${leader?.liveNodes ?? 0} of ${count} storage nodes after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, pauseMs));
      }
    });
  }

  /** cluster.json with the pids of the processes running now (detached clusters), one write at a time. */
  #recordPids(): Promise<void> {
    const write = async (): Promise<void> => {
      const pids = this.pids();
      const { pids: _old, ...layout } = this.spec;
      this.#spec = Object.keys(pids).length > 0 ? { ...layout, pids } : layout;
      await writeJsonAtomically(join(this.dir, CLUSTER_FILE), this.#spec);
    };
    const next = this.#pidWrites.then(write, write);
    this.#pidWrites = next.catch(() => {});
    return next;
  }

  #pidWrites: Promise<void> = Promise.resolve();

  /** Starts one master process; resolves when it prints its ready line. */
  async startMaster(name: string): Promise<void> {
    const m = this.#master(name);
    const peers = this.spec.masters.filter((o) => o.name !== name).map((o) => o.addr);
    const admin = await this.adminPeerId();
    await this.#spawn(name, m.dir, ['master', 'start', '--name', name, '--dir', m.dir, '--listen', `/ip4/127.0.0.1/tcp/${m.port}`, ...(peers.length ? ['--peers', peers.join(',')] : []), '--admit-nodes', this.#o.admitNodes ?? 'auto', '--admin-peers', admin, '--http', '127.0.0.1:0', ...(this.#o.masterArgs ?? [])]);
  }

  /** Starts one storage node process; resolves when it prints its ready line. */
  async startNode(name: string): Promise<void> {
    const n = (this.spec.nodes ?? []).find((x) => x.name === name);
    if (!n) throw new DfsError('ERR_INVALID_ARGUMENT', `no node named ${name}`);
    await this.#spawn(name, n.dir, ['node', 'start', '--name', name, '--dir', n.dir, '--listen', `/ip4/127.0.0.1/tcp/${n.port}`, '--masters', this.masterAddrs.join(','), ...(this.#o.nodeArgs ?? [])]);
  }

  /** The secret flags every master and node gets: the key file, or --insecure. */
  #secretArgs(): string[] {
    const path = this.swarmKeyPath;
    if (path === undefined) return ['--insecure'];
    return ['--swarm-key', path, ...(this.#o.secretMode ? ['--secret-mode', this.#o.secretMode] : [])];
  }

  async #spawn(name: string, dir: string, dfsArgs: string[]): Promise<void> {
    if (this.#procs.has(name)) throw new Error(`${name} is already running`);
    if (this.#signal?.aborted) throw abortedError();
    // DFS_NODE_ARGS: extra node flags for every child, e.g. "--cpu-prof --cpu-prof-dir=/tmp/p".
    const nodeArgs = (process.env.DFS_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const args = [...nodeArgs, BIN, ...dfsArgs, ...this.#secretArgs()];
    const log = join(dir, 'process.log');
    const child = this.#o.detached
      ? spawn(process.execPath, args, { detached: true, stdio: ['ignore', 'pipe', openSync(log, 'a', PRIVATE_FILE_MODE)] })
      : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    if (!this.#o.detached) child.stderr!.pipe(createWriteStream(log, { flags: 'a', mode: PRIVATE_FILE_MODE }));
    this.#procs.set(name, child);
    child.once('exit', () => {
      if (this.#procs.get(name) === child) this.#procs.delete(name);
    });
    // Recorded while it starts: waitForReady must listen for an early exit from the first moment.
    const recorded = this.#o.detached ? this.#recordPids() : Promise.resolve();
    recorded.catch(() => {}); // awaited below once ready; a failed start reports its own error
    this.#ready.set(name, await waitForReady(child, name, log, this.#o.readyTimeoutMs ?? 20_000));
    await recorded;
    if (this.#o.detached) {
      child.stdout!.destroy();
      child.unref();
    }
  }

  /** What a client peer of this cluster needs: the secret and how it is checked. */
  get peerOptions(): PeerOptions {
    if (this.#o.insecure) return {};
    if (!this.#swarmKey) throw new Error('local cluster not initialised');
    return { psk: this.#swarmKey, ...(this.#o.secretMode ? { secretMode: this.#o.secretMode } : {}) };
  }

  /** A libp2p peer that can reach this cluster (holds its secret); the caller stops it. */
  createClientPeer(options: PeerOptions = {}): Promise<DfsPeer> {
    return createPeer({ ...options, ...this.peerOptions });
  }

  /**
   * The identity allowed to administer nodes (admit, drain, rm, scrub) besides the masters: a
   * key in `<dir>/admin` (0600), made once. The CLI uses it from the cluster's directory.
   */
  async adminPeerId(): Promise<string> {
    return peerIdFromPrivateKey(await loadOrCreateIdentity(join(this.dir, ADMIN_IDENTITY_DIR))).toString();
  }

  /** A client peer with the admin identity (one at a time: a peer id may hold few connections). */
  async createAdminPeer(): Promise<DfsPeer> {
    return createPeer({ ...this.peerOptions, privateKey: await loadOrCreateIdentity(join(this.dir, ADMIN_IDENTITY_DIR)) });
  }

  /**
   * Runs `fn` with a metadata client of this cluster that speaks with the cluster's admin key
   * (the masters take it for user `admin`, role admin: see --admin-peers), unless `options`
   * gives a token. Calls at the same time share one short-lived libp2p peer: a peer id may hold
   * only a few connections to a master, and every call here has the same one.
   */
  async withClient<T>(fn: (client: MetaClient) => Promise<T>, options: Partial<MetaClientOptions> = {}): Promise<T> {
    const { peer, release } = await this.#acquireAdminPeer();
    try {
      return await fn(new MetaClient({ peer, masters: this.masterAddrs, ...options }));
    } finally {
      await release();
    }
  }

  /** The shared admin peer while any withClient call runs; stopped when the last one ends. */
  #adminPeer: { readonly peer: Promise<DfsPeer>; users: number } | undefined;

  async #acquireAdminPeer(): Promise<{ peer: DfsPeer; release: () => Promise<void> }> {
    const slot = this.#adminPeer ?? { peer: this.createAdminPeer(), users: 0 };
    this.#adminPeer = slot;
    slot.users++;
    const drop = (): boolean => {
      slot.users--;
      if (slot.users > 0) return false;
      if (this.#adminPeer === slot) this.#adminPeer = undefined;
      return true;
    };
    let peer: DfsPeer;
    try {
      peer = await slot.peer;
    } catch (err) {
      drop();
      throw err;
    }
    let released = false;
    return {
      peer,
      release: async () => {
        if (released) return;
        released = true;
        if (drop()) await peer.stop();
      },
    };
  }

  /**
   * Makes the cluster's first user, `admin` (role admin), through the admin key, with a password
   * of 18 random bytes (base64url), and logs it in: what `dfs cluster up` prints once and saves.
   * A cluster that already has a user `admin` is left as it is (`created: false`): its password
   * is whatever was printed or set before.
   */
  async bootstrapAdmin(random: (bytes: number) => Uint8Array = randomBytes): Promise<AdminBootstrap> {
    return this.withClient(async (c) => {
      if ((await c.listUsers()).some((u) => u.name === ADMIN_USER)) return { created: false };
      const password = Buffer.from(random(ADMIN_PASSWORD_BYTES)).toString('base64url');
      try {
        await c.addUser(ADMIN_USER, password, ['admin']);
      } catch (err) {
        // Another `cluster up` of the same directory got there first: theirs stands.
        if (isDfsError(err, 'ERR_EXISTS')) return { created: false };
        throw err;
      }
      this.#adminPassword = password;
      const login = await c.login(ADMIN_USER, password);
      return { created: true, password, login };
    });
  }

  /** The admin password this object set (bootstrapAdmin or adminToken), if it set one. */
  #adminPassword: string | undefined;

  /**
   * A login token of user `admin`, for tests and benchmarks that run `dfs` commands against this
   * cluster (as DFS_TOKEN). Makes the user the first time; when it exists and this object does
   * not know its password, sets a new random one through the admin key first — so do not call
   * it on a cluster whose admin password a person relies on.
   */
  async adminToken(): Promise<string> {
    if (this.#adminPassword === undefined) {
      const made = await this.bootstrapAdmin();
      if (made.created) return made.login.token;
    }
    return this.withClient(async (c) => {
      if (this.#adminPassword === undefined) {
        const password = randomBytes(ADMIN_PASSWORD_BYTES).toString('base64url');
        await c.setPassword(ADMIN_USER, password);
        this.#adminPassword = password;
      }
      return (await c.login(ADMIN_USER, this.#adminPassword)).token;
    });
  }

  /** Sends `signal` to a master or node and resolves when it has exited. */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#procs.get(name);
    if (!child) return;
    const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
    child.kill(signal);
    await exited;
  }

  /** The peer id and addresses a process announced at its last start. */
  readyInfo(name: string): ReadyInfo {
    const info = this.#ready.get(name);
    if (!info) throw new DfsError('ERR_NOT_FOUND', `${name} has not been started`);
    return info;
  }

  isRunning(name: string): boolean {
    return this.#procs.has(name);
  }

  /** The pid of each process running now, by name (masters and storage nodes). */
  pids(): Record<string, number> {
    return Object.fromEntries([...this.#procs].map(([name, p]) => [name, p.pid!]));
  }

  /** Stops every master: SIGTERM, then SIGKILL for any still running after `graceMs`. */
  async stop(graceMs = 5_000): Promise<void> {
    await Promise.all(
      [...this.#procs.entries()].map(async ([name, child]) => {
        const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
        this.#procs.delete(name);
      }),
    );
    // Nothing of this cluster runs now: `cluster down` must not signal the pids again.
    if (this.#o.detached && this.#spec) await this.#recordPids();
  }

  #master(name: string): MasterSpec {
    const m = this.spec.masters.find((x) => x.name === name);
    if (!m) throw new DfsError('ERR_INVALID_ARGUMENT', `no master named ${name}`);
    return m;
  }
}

function abortedError(): DfsError {
  return new DfsError('ERR_ABORTED', 'interrupted: the cluster start was stopped, and every process it had started with it');
}

/**
 * Stops a detached cluster from its cluster.json (dfs cluster down): SIGTERM to every process at
 * once (each stops gracefully), SIGKILL to any still running after `graceMs`.
 */
export async function stopDetachedCluster(dir: string, graceMs = 5_000): Promise<string[]> {
  const spec = await readClusterSpec(resolve(dir));
  if (!spec) throw new DfsError('ERR_NOT_FOUND', `no cluster in ${dir} (no ${CLUSTER_FILE})`);
  const running = Object.entries(spec.pids ?? {}).filter(([, pid]) => isAlive(pid));
  for (const [, pid] of running) process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (running.some(([, pid]) => isAlive(pid)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const [, pid] of running) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  // Only the pids go: the layout (masters and storage nodes) is what the next `cluster up` starts.
  const { pids: _pids, ...layout } = spec;
  await writeJsonAtomically(join(resolve(dir), CLUSTER_FILE), layout);
  return running.map(([name]) => name);
}

/** Whether `pid` runs: a zombie (exited, not yet reaped by init) counts as stopped. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // /proc/<pid>/stat: "pid (comm) state ..."; comm may contain spaces, the state follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return true; // no /proc (not Linux): signal 0 said it exists
  }
}

async function waitForReady(child: ChildProcess, name: string, log: string, timeoutMs: number): Promise<ReadyInfo> {
  const lines = createInterface({ input: child.stdout! });
  const ready = new Promise<ReadyInfo>((ok, fail) => {
    lines.on('line', (line) => {
      if (line.startsWith('{') && line.includes('"event":"ready"')) ok(JSON.parse(line) as ReadyInfo);
    });
    child.once('exit', (code, signal) => fail(new DfsError('ERR_IO', `${name} exited before it was ready (${signal ?? `code ${code}`}); see ${log}`)));
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new DfsError('ERR_TIMEOUT', `${name} not ready within ${timeoutMs} ms; see ${log}`)), timeoutMs);
  });
  try {
    return await Promise.race([ready, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
