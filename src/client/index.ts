/** The client side of dfs: metadata (and, later, chunk) operations against a cluster. */
export { MetaClient } from './meta-client.ts';
export type { MetaClientOptions } from './meta-client.ts';
