/** Local clusters of real dfs processes on loopback: `dfs cluster up` and the test fixture. */
export { ADMIN_IDENTITY_DIR, ADMIN_USER, LocalCluster, freePort, readClusterSpec, stopDetachedCluster, CLUSTER_FILE } from './local-cluster.ts';
export type { AdminBootstrap, ClusterSpec, MasterSpec, LocalClusterOptions } from './local-cluster.ts';
export { CLIENT_CONFIG_FILE, clientConfigSchema, clusterKeyOf, parseClientConfig, parseConfigText, SECRET_MODES, SWARM_KEY_FILE, swarmKeyPathOf } from './client-config.ts';
export type { ClientConfig, SecretMode } from './client-config.ts';
