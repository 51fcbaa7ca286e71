import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_TOKEN_CHARS, rolesSchema, userNameSchema } from '../auth/index.ts';
import { DfsError, isDfsError } from '../errors/index.ts';
import { type Infer, schema } from '../net/index.ts';
import { requireConfigDir } from './config-dir.ts';
import { privateDir, writePrivateFile } from './private-files.ts';

/**
 * The logins `dfs login` keeps: one file per cluster, `<config dir>/tokens/<cluster key>.json`
 * (see clusterKeyOf in src/cluster/client-config.ts). The token in it is a bearer credential: the
 * directory is 0700 and the file 0600, whatever the umask, and the file is replaced atomically so
 * a reader never sees half of one. What is read back is checked with a schema: a damaged file is
 * a clear "log in again", never a crash.
 */
export const TOKENS_DIR = 'tokens';
/** The environment variable whose token beats the saved login (scripts, CI). */
export const TOKEN_ENV = 'DFS_TOKEN';

const CLUSTER_KEY_PATTERN = /^[0-9a-f]{16}$/;

export const savedLoginSchema = schema.object({
  version: schema.literal(1),
  /** The cluster key the file is named after (a copied file for another cluster is refused). */
  cluster: schema.string({ pattern: CLUSTER_KEY_PATTERN }),
  user: userNameSchema,
  roles: rolesSchema,
  token: schema.string({ minLength: 1, maxLength: MAX_TOKEN_CHARS }),
  expiresAtMs: schema.integer({ min: 0 }),
  savedAtMs: schema.integer({ min: 0 }),
});
export type SavedLogin = Infer<typeof savedLoginSchema>;

type Env = Readonly<Record<string, string | undefined>>;

function checkKey(clusterKey: string): void {
  // The key becomes a file name: never let one reach outside the tokens directory.
  if (!CLUSTER_KEY_PATTERN.test(clusterKey)) throw new DfsError('ERR_INVALID_ARGUMENT', `not a cluster key: "${clusterKey}"`);
}

/** Where the login for `clusterKey` is kept. */
export function loginPath(env: Env, clusterKey: string): string {
  checkKey(clusterKey);
  return join(requireConfigDir(env), TOKENS_DIR, `${clusterKey}.json`);
}

/** Saves a login (replacing any earlier one for the same cluster); returns the file's path. */
export async function saveLogin(env: Env, login: SavedLogin): Promise<string> {
  const checked = savedLoginSchema.parse(login);
  const path = loginPath(env, checked.cluster);
  const configDir = requireConfigDir(env);
  await privateDir(configDir);
  await privateDir(join(configDir, TOKENS_DIR));
  await writePrivateFile(path, JSON.stringify(checked, null, 2) + '\n');
  return path;
}

/**
 * The saved login for `clusterKey`, or undefined when there is none (or no config directory).
 * A file that is not a saved login (damaged, edited, another cluster's) is ERR_UNAUTHENTICATED
 * telling the user to log in again, which replaces it.
 */
export async function loadLogin(env: Env, clusterKey: string): Promise<{ path: string; login: SavedLogin } | undefined> {
  checkKey(clusterKey);
  let path: string;
  try {
    path = loginPath(env, clusterKey);
  } catch (err) {
    if (isDfsError(err, 'ERR_USAGE')) return undefined; // no config directory: nobody logged in here
    throw err;
  }
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new DfsError('ERR_UNAUTHENTICATED', `cannot read your saved login ${path} (${(err as Error).message}): run npx dfs login again`);
  }
  const broken = (why: string) => new DfsError('ERR_UNAUTHENTICATED', `your saved login ${path} is damaged (${why}): run npx dfs login again, which replaces it`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw broken('not JSON');
  }
  let login: SavedLogin;
  try {
    login = savedLoginSchema.parse(json);
  } catch (err) {
    throw broken(isDfsError(err) ? err.message : String(err));
  }
  if (login.cluster !== clusterKey) throw broken(`it is for cluster ${login.cluster}, not ${clusterKey}`);
  return { path, login };
}

/** Deletes the saved login for `clusterKey`; resolves its path if there was one. */
export async function deleteLogin(env: Env, clusterKey: string): Promise<string | undefined> {
  const path = loginPath(env, clusterKey);
  try {
    await rm(path);
    return path;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new DfsError('ERR_IO', `cannot delete the login ${path}: ${(err as Error).message}`, { cause: err });
  }
}
