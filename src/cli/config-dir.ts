import { isAbsolute, join } from 'node:path';
import { DfsError } from '../errors/index.ts';

/** Names the user's dfs config directory outright (tests set it to a temp directory). */
export const CONFIG_DIR_ENV = 'DFS_CONFIG_DIR';

/**
 * The user's dfs config directory (logins live under it): $DFS_CONFIG_DIR, else
 * $XDG_CONFIG_HOME/dfs, else $HOME/.config/dfs. Read from the injected environment only — never
 * from the OS account database — so a test that runs the CLI with an empty environment can never
 * touch a real home directory; undefined when the environment names none. XDG_CONFIG_HOME counts
 * only when absolute, as the XDG spec says.
 */
export function configDirOf(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const explicit = env[CONFIG_DIR_ENV];
  if (explicit) return explicit;
  const xdg = env.XDG_CONFIG_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, 'dfs');
  const home = env.HOME;
  if (home) return join(home, '.config', 'dfs');
  return undefined;
}

/** configDirOf, or ERR_USAGE saying what to set. */
export function requireConfigDir(env: Readonly<Record<string, string | undefined>>): string {
  const dir = configDirOf(env);
  if (dir === undefined) throw new DfsError('ERR_USAGE', `no config directory to keep your login in: set ${CONFIG_DIR_ENV} (or HOME)`);
  return dir;
}
