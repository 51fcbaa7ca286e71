import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { DfsError } from '../errors/index.ts';

/**
 * Files only their owner may read (saved logins, named clusters' swarm keys): directories 0700,
 * files 0600, whatever the umask.
 */
const PRIVATE_DIR_MODE = 0o700;
const PRIVATE_FILE_MODE = 0o600;

/** Makes `dir` if needed and (re)sets it to 0700: an existing one may have been made wider. */
export async function privateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await chmod(dir, PRIVATE_DIR_MODE);
}

/**
 * Writes `text` to `path` atomically (a reader never sees half of it), mode 0600: a fresh temp
 * file ('wx'), so the mode given here is the one it gets, never an old, wider one.
 */
export async function writePrivateFile(path: string, text: string | Uint8Array): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, text, { mode: PRIVATE_FILE_MODE, flag: 'wx' });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new DfsError('ERR_IO', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}
