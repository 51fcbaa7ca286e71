/**
 * Loaded first into every cluster process of a chaos run that makes network partitions
 * (DFS_NODE_ARGS="--import <this file>", which LocalCluster gives each child): switches the
 * process to the uid the harness gave its name (DFS_CHAOS_UIDS, {"m1": 40001, ...}), so that the
 * firewall can tell its connections apart (see firewall.ts). Nothing else: the process is the
 * plain dfs binary. A no-op when the process already runs as that uid (after the server's
 * re-exec with its V8 flags, which keeps the uid and loads this again).
 */
const uids = JSON.parse(process.env.DFS_CHAOS_UIDS ?? '{}') as Record<string, number>;
const at = process.argv.indexOf('--name');
const name = at >= 0 ? process.argv[at + 1] : undefined;
const uid = name !== undefined ? uids[name] : undefined;
if (uid !== undefined && process.getuid?.() !== uid) {
  const gid = Number(process.env.DFS_CHAOS_GID ?? uid);
  process.setgroups?.([gid]);
  process.setgid?.(gid);
  process.setuid?.(uid);
}
