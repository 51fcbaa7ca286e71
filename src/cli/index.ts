/** The `dfs` command line: a thin adapter over the other folders. */
export { main, VERSION } from './main.ts';
export { EXIT } from './exit-codes.ts';
export type { CliIO } from './io.ts';
