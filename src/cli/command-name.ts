import { sep } from 'node:path';

/**
 * How the user runs dfs, for the hints in messages ("run: dfs cluster up"): `npx dfs` when the
 * binary is not on PATH but came through npm (npx or `npm run` set npm_execpath; a project-local
 * install runs from node_modules/.bin), else `dfs`. Every hint goes through this one function.
 */
export function commandName(io: { readonly env: Readonly<Record<string, string | undefined>>; readonly argv1?: string | undefined }): string {
  if (io.env.npm_execpath) return 'npx dfs';
  if (io.argv1?.includes(`${sep}node_modules${sep}.bin${sep}`)) return 'npx dfs';
  return 'dfs';
}
