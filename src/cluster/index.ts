/** Local clusters of real dfs processes on loopback: `dfs cluster up` and the test fixture. */
export { LocalCluster, freePort, readClusterSpec, stopDetachedCluster, CLUSTER_FILE, CLIENT_CONFIG_FILE } from './local-cluster.ts';
export type { ClusterSpec, MasterSpec, ClientConfig, LocalClusterOptions } from './local-cluster.ts';
