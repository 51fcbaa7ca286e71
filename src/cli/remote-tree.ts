import { join } from 'node:path';
import type { MetaClient } from '../client/index.ts';
import { DfsError, isDfsError } from '../errors/index.ts';
import { baseName, joinPath, type ListedEntry, normalizePath } from '../meta/index.ts';

/** What a remote path names: a file, a directory, or nothing. */
export type RemoteKind = 'file' | 'dir' | undefined;

export async function remoteKind(meta: MetaClient, path: string): Promise<RemoteKind> {
  try {
    return (await meta.stat(path)).kind;
  } catch (err) {
    if (isDfsError(err, 'ERR_NOT_FOUND')) return undefined;
    throw err;
  }
}

/** Every entry of a remote directory, page by page (in name order). */
export async function* listAll(meta: MetaClient, dir: string): AsyncGenerator<ListedEntry> {
  let after: string | undefined;
  for (;;) {
    const page = await meta.list(dir, { ...(after !== undefined ? { after } : {}), limit: 1000 });
    yield* page.entries;
    if (page.next === undefined) return;
    after = page.next;
  }
}

/**
 * Where each source goes, as cp and mv decide it: into `dest` (keeping the source's name) when
 * `dest` is a directory, or ends in "/" (`slashMakesDir`: a put creates it; otherwise it must
 * exist), else `dest` itself. Several sources need a directory.
 */
export function targetsFor(sources: readonly string[], dest: string, destKind: RemoteKind, what: { command: string; slashMakesDir: boolean; nameOf: (source: string) => string; join: (dir: string, name: string) => string }): string[] {
  const slash = dest.endsWith('/');
  const intoDir = destKind === 'dir' || (slash && what.slashMakesDir && destKind === undefined);
  if (slash && !intoDir) {
    throw destKind === undefined ? new DfsError('ERR_NOT_FOUND', `no directory ${dest}: make it first (mkdir)`) : new DfsError('ERR_NOT_DIR', `${dest} is not a directory`);
  }
  if (sources.length > 1 && !intoDir) {
    throw destKind === undefined
      ? new DfsError('ERR_NOT_FOUND', `no directory ${dest}: ${what.command} with several sources needs an existing directory as the last argument`)
      : new DfsError('ERR_NOT_DIR', `${dest} is not a directory: ${what.command} with several sources needs a directory as the last argument`);
  }
  return sources.map((s) => (intoDir ? what.join(dest, what.nameOf(s)) : dest));
}

/** A remote path's name, for copies into a directory ("/" has none: its contents go in). */
export function remoteName(path: string): string {
  return baseName(normalizePath(path));
}

export function joinRemote(dir: string, name: string): string {
  const d = normalizePath(dir);
  return name === '' ? d : joinPath(d, name);
}

/**
 * Where a listed entry goes under the local directory `dir`. The name comes from a master's
 * answer, which is not schema-checked: one that is not a single path segment ("..", "a/b") would
 * write outside `dir`, so it is refused (ERR_PROTOCOL) rather than trusted.
 */
export function localChild(dir: string, name: string): string {
  if (name === '' || name === '.' || name === '..' || /[/\0]/.test(name)) {
    throw new DfsError('ERR_PROTOCOL', `the master listed an entry named ${JSON.stringify(name)}, which is not a file name: refusing to write it`);
  }
  return join(dir, name);
}
