import { createHash } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { DfsError, isDfsError } from '../errors/index.ts';
import { type Infer, schema } from '../net/index.ts';

/** The file a client finds its cluster by (`dfs cluster up` writes one in the cluster directory). */
export const CLIENT_CONFIG_FILE = 'dfs-client.json';

/** The cluster secret file `dfs cluster up` makes in its cluster directory (mode 0600). */
export const SWARM_KEY_FILE = 'swarm.key';

/** How peers check the cluster secret (see PeerOptions.secretMode in src/net/peer.ts). */
export const SECRET_MODES = ['handshake', 'pnet'] as const;
export type SecretMode = (typeof SECRET_MODES)[number];

/**
 * dfs-client.json: the masters, and the cluster secret. `swarmKey` is a path to the swarm key
 * file, relative to the directory holding the config (or absolute); a cluster that runs without
 * a secret says so with `"insecure": true` — a config with neither is refused, so a client never
 * falls back to an open connection by accident.
 */
export const clientConfigSchema = schema.object({
  masters: schema.array(schema.string({ minLength: 1, maxLength: 1024 }), { minLength: 1, maxLength: 64 }),
  swarmKey: schema.optional(schema.string({ minLength: 1, maxLength: 4096 })),
  insecure: schema.optional(schema.boolean()),
  secretMode: schema.optional(schema.oneOf(SECRET_MODES)),
});

export type ClientConfig = Infer<typeof clientConfigSchema>;

/** Parses the text of a client config file at `path`; ERR_INVALID_ARGUMENT naming the file and the field. */
export function parseClientConfig(text: string, path: string): ClientConfig {
  return parseConfigText(text, path, clientConfigSchema);
}

/**
 * Parses the JSON text of any config file read from `path` with schema `s`: not JSON, or not
 * what `s` accepts, is ERR_INVALID_ARGUMENT naming the file (and the field).
 */
export function parseConfigText<T>(text: string, path: string, s: { parse(input: unknown): T }): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `${path} is not valid JSON: ${(err as Error).message}`);
  }
  try {
    return s.parse(json);
  } catch (err) {
    if (isDfsError(err)) throw new DfsError('ERR_INVALID_ARGUMENT', `${path}: ${err.message}`);
    throw err;
  }
}

/** Where a config's `swarmKey` points: relative paths are taken from the config file's directory. */
export function swarmKeyPathOf(config: ClientConfig, configPath: string): string | undefined {
  return config.swarmKey === undefined ? undefined : resolve(dirname(configPath), config.swarmKey);
}

/**
 * A stable id of a cluster, for keeping one login per cluster: the first 16 hex characters of the
 * SHA-256 of its masters' peer ids, sorted (so the order of `masters` in a config, or their
 * addresses and ports, do not matter; a master's identity does). An address without a /p2p/ part
 * counts as a whole.
 */
export function clusterKeyOf(masters: readonly string[]): string {
  const ids = masters.map((addr) => /\/p2p\/([^/]+)$/.exec(addr)?.[1] ?? addr).sort();
  return createHash('sha256').update(ids.join('\n')).digest('hex').slice(0, 16);
}
