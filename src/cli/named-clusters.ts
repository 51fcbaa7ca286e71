import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CLIENT_CONFIG_FILE, type ClientConfig, parseClientConfig, parseConfigText, SWARM_KEY_FILE, swarmKeyPathOf } from '../cluster/index.ts';
import { DfsError, isDfsError } from '../errors/index.ts';
import { type Infer, readSwarmKeyFile, schema } from '../net/index.ts';
import { commandName } from './command-name.ts';
import { configDirOf, requireConfigDir } from './config-dir.ts';
import { privateDir, writePrivateFile } from './private-files.ts';

/**
 * Named clusters, kept in the user's config directory (config-dir.ts):
 *
 *   <config>/config.json                     {"version":1,"currentCluster":"prod"}
 *   <config>/clusters/<name>/dfs-client.json  a copy of the cluster's client config
 *   <config>/clusters/<name>/swarm.key        a copy of its secret (the copy's "swarmKey")
 *
 * Directories 0700, files 0600: the swarm key lets its holder join the cluster. Every file read
 * back is checked with a schema; a damaged one is one line naming the file (ERR_INVALID_ARGUMENT,
 * exit 2).
 */
export const USER_CONFIG_FILE = 'config.json';
export const CLUSTERS_DIR = 'clusters';

/** A cluster name becomes a directory name: letters, digits, `.`, `_`, `-`; never `..` or a path. */
export const CLUSTER_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export const userConfigSchema = schema.object({
  version: schema.literal(1),
  /** The cluster commands talk to when nothing else names one (`dfs cluster use`). */
  currentCluster: schema.optional(schema.string({ pattern: CLUSTER_NAME_PATTERN })),
});
export type UserConfig = Infer<typeof userConfigSchema>;

type Env = Readonly<Record<string, string | undefined>>;

export function checkClusterName(name: string): string {
  if (!CLUSTER_NAME_PATTERN.test(name)) {
    throw new DfsError('ERR_USAGE', `"${name}" is not a cluster name: use letters, digits, ".", "_" and "-" (at most 64, starting with a letter or digit)`);
  }
  return name;
}

export function isClusterName(name: string): boolean {
  return CLUSTER_NAME_PATTERN.test(name);
}

/** The directory of the named cluster `name` (it may not exist). */
export function namedClusterDir(env: Env, name: string): string {
  return join(requireConfigDir(env), CLUSTERS_DIR, checkClusterName(name));
}

/**
 * A config file's text; undefined when it is not there (nor is a directory on its way, nor is it
 * a directory itself); ERR_IO naming it when it cannot be read.
 */
export async function readConfigText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined;
    throw new DfsError('ERR_IO', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** The user's config.json (an empty one when there is none, or no config directory). */
export async function loadUserConfig(env: Env): Promise<{ path: string | undefined; config: UserConfig }> {
  const dir = configDirOf(env);
  if (dir === undefined) return { path: undefined, config: { version: 1 } };
  const path = join(dir, USER_CONFIG_FILE);
  const text = await readConfigText(path);
  return { path, config: text === undefined ? { version: 1 } : parseConfigText(text, path, userConfigSchema) };
}

export async function saveUserConfig(env: Env, config: UserConfig): Promise<string> {
  const checked = userConfigSchema.parse(config);
  const dir = requireConfigDir(env);
  await privateDir(dir);
  const path = join(dir, USER_CONFIG_FILE);
  await writePrivateFile(path, JSON.stringify(checked, null, 2) + '\n');
  return path;
}

/** A named cluster's client config, read and checked. */
export interface NamedCluster {
  readonly name: string;
  readonly path: string;
  readonly config: ClientConfig;
}

/** The named cluster `name`, or undefined when there is none by that name. */
export async function loadNamedCluster(env: Env, name: string): Promise<NamedCluster | undefined> {
  if (configDirOf(env) === undefined || !isClusterName(name)) return undefined;
  const path = join(namedClusterDir(env, name), CLIENT_CONFIG_FILE);
  const text = await readConfigText(path);
  return text === undefined ? undefined : { name, path, config: parseClientConfig(text, path) };
}

/** Every named cluster, by name. */
export async function listNamedClusters(env: Env): Promise<NamedCluster[]> {
  const dir = configDirOf(env);
  if (dir === undefined) return [];
  let names: string[];
  try {
    names = await readdir(join(dir, CLUSTERS_DIR));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new DfsError('ERR_IO', `cannot read ${join(dir, CLUSTERS_DIR)}: ${(err as Error).message}`, { cause: err });
  }
  const out: NamedCluster[] = [];
  for (const name of names.filter(isClusterName).sort()) {
    const found = await loadNamedCluster(env, name);
    if (found) out.push(found);
  }
  return out;
}

/**
 * The client config at `source`: a dfs-client.json, or a directory holding one (or holding a
 * .dfs-local with one, where `dfs cluster up` puts it).
 */
async function readSourceConfig(source: string, cwd: string): Promise<{ path: string; config: ClientConfig }> {
  const given = resolve(cwd, source);
  const isDir = await stat(given).then((s) => s.isDirectory(), () => false);
  const candidates = isDir ? [join(given, CLIENT_CONFIG_FILE), join(given, '.dfs-local', CLIENT_CONFIG_FILE)] : [given];
  for (const path of candidates) {
    const text = await readConfigText(path);
    if (text !== undefined) return { path, config: parseClientConfig(text, path) };
  }
  throw new DfsError('ERR_NOT_FOUND', `no ${CLIENT_CONFIG_FILE} at ${source}: give the client config (or the directory holding it) that the cluster's operator handed out`);
}

/**
 * `dfs cluster add NAME SOURCE`: copies SOURCE's client config, and the swarm key it names, into
 * <config>/clusters/NAME. The copy's "swarmKey" is "swarm.key" beside it, so the named cluster
 * keeps working when the source moves. An existing name is refused (remove it first).
 */
export async function addNamedCluster(env: Env, name: string, source: string, cwd = process.cwd()): Promise<NamedCluster> {
  checkClusterName(name);
  const dir = namedClusterDir(env, name);
  if (await loadNamedCluster(env, name)) throw new DfsError('ERR_EXISTS', `there is already a cluster named ${name}: remove it first with ${commandName({ env })} cluster rm ${name}`);
  const { path, config } = await readSourceConfig(source, cwd);
  const keyPath = swarmKeyPathOf(config, path);
  if (keyPath !== undefined && config.insecure) throw new DfsError('ERR_INVALID_ARGUMENT', `${path} sets both "swarmKey" and "insecure": keep the one the cluster runs with`);
  if (keyPath === undefined && !config.insecure) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `${path} names no cluster secret: add "swarmKey": "<path to the cluster's swarm.key>" to it, or "insecure": true if the cluster runs without one`);
  }
  // Read (and checked) before anything is written: a bad key leaves no half-made entry.
  const key = keyPath === undefined ? undefined : await readFile(keyPath).catch((err: unknown) => {
    throw new DfsError('ERR_NOT_FOUND', `cannot read the cluster secret ${keyPath} that ${path} names: ${(err as Error).message}`, { cause: err });
  });
  if (keyPath !== undefined) await readSwarmKeyFile(keyPath);
  const copy: ClientConfig = {
    masters: config.masters,
    ...(key ? { swarmKey: SWARM_KEY_FILE } : { insecure: true }),
    ...(config.secretMode ? { secretMode: config.secretMode } : {}),
  };
  await privateDir(requireConfigDir(env));
  await privateDir(join(requireConfigDir(env), CLUSTERS_DIR));
  await privateDir(dir);
  if (key) await writePrivateFile(join(dir, SWARM_KEY_FILE), key);
  const configPath = join(dir, CLIENT_CONFIG_FILE);
  await writePrivateFile(configPath, JSON.stringify(copy, null, 2) + '\n');
  return { name, path: configPath, config: copy };
}

/** `dfs cluster rm NAME`: deletes the entry; the current cluster, if it was, becomes none. */
export async function removeNamedCluster(env: Env, name: string): Promise<{ wasCurrent: boolean }> {
  checkClusterName(name);
  const dir = namedClusterDir(env, name);
  const exists = await stat(dir).then(() => true, () => false);
  if (!exists) throw new DfsError('ERR_NOT_FOUND', `no cluster named ${name} (see ${commandName({ env })} cluster list)`);
  const { config } = await loadUserConfig(env);
  const wasCurrent = config.currentCluster === name;
  if (wasCurrent) await saveUserConfig(env, { version: 1 });
  await rm(dir, { recursive: true, force: true });
  return { wasCurrent };
}

/** `dfs cluster use NAME`: makes it the cluster commands talk to when nothing else names one. */
export async function useNamedCluster(env: Env, name: string): Promise<string> {
  checkClusterName(name);
  if (!(await loadNamedCluster(env, name))) throw new DfsError('ERR_NOT_FOUND', `no cluster named ${name}: add it first with ${commandName({ env })} cluster add ${name} PATH-TO-dfs-client.json`);
  const { config } = await loadUserConfig(env);
  return saveUserConfig(env, { ...config, currentCluster: name });
}

/**
 * The current cluster of config.json, or undefined when it names none. One it names that is
 * gone (removed by hand) is an error naming config.json: silently talking to no cluster, or to
 * another, would be worse.
 */
export async function currentNamedCluster(env: Env): Promise<NamedCluster | undefined> {
  const { path, config } = await loadUserConfig(env);
  if (config.currentCluster === undefined) return undefined;
  const found = await loadNamedCluster(env, config.currentCluster);
  if (!found) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `${path}: the current cluster "${config.currentCluster}" has no entry in ${join(requireConfigDir(env), CLUSTERS_DIR)}: choose another with ${commandName({ env })} cluster use NAME`);
  }
  return found;
}
