import { resolve } from 'node:path';
import { type ClientConfig, SECRET_MODES, type SecretMode, swarmKeyPathOf } from '../cluster/index.ts';
import { DfsError } from '../errors/index.ts';
import { readSwarmKeyFile } from '../net/index.ts';
import type { CliIO } from './io.ts';

/** The environment variable naming the cluster secret file (a path), below the flag. */
export const SWARM_KEY_ENV = 'DFS_SWARM_KEY';

/** The secret flags every command takes (global options in main.ts). */
export interface SecretOptions {
  /** --swarm-key FILE (cac may hand a number for a name made of digits). */
  swarmKey?: string | number;
  /** --insecure */
  insecure?: boolean;
  /** --secret-mode handshake|pnet */
  secretMode?: string | number;
}

/** The cluster secret a process runs with. */
export interface ClusterSecret {
  /** The swarm key file's bytes; undefined: no secret (--insecure, or `"insecure": true`). */
  readonly psk?: Uint8Array;
  readonly secretMode: SecretMode;
  /** What it is and where it came from, for messages: `the swarm key /a/b (--swarm-key)`, `no secret (--insecure)`... */
  readonly source: string;
}

const HOW_TO_GET_ONE = 'make one with "dfs cluster init" and copy it, mode 0600, to every host (a local "dfs cluster up" makes its own)';

export function parseSecretMode(value: unknown): SecretMode | undefined {
  if (value === undefined) return undefined;
  const mode = SECRET_MODES.find((m) => m === String(value));
  if (!mode) throw new DfsError('ERR_USAGE', `--secret-mode takes ${SECRET_MODES.join(' or ')}, not "${String(value)}"`);
  return mode;
}

function flagPath(options: SecretOptions): string | undefined {
  if (options.swarmKey === undefined) return undefined;
  const path = String(options.swarmKey);
  if (path === '') throw new DfsError('ERR_USAGE', '--swarm-key needs a file');
  if (options.insecure) throw new DfsError('ERR_USAGE', 'give --swarm-key FILE or --insecure, not both');
  return path;
}

function envPath(io: CliIO): string | undefined {
  const path = io.env[SWARM_KEY_ENV];
  return path === undefined || path === '' ? undefined : path;
}

async function fromFile(path: string, from: string, secretMode: SecretMode): Promise<ClusterSecret> {
  const absolute = resolve(path);
  return { psk: await readSwarmKeyFile(absolute), secretMode, source: `the swarm key ${absolute} (${from})` };
}

/**
 * The secret of `dfs master start` / `dfs node start`: --swarm-key FILE, else DFS_SWARM_KEY
 * (a file path); --insecure runs without one. With none of these it fails at once (ERR_USAGE):
 * a server never opens to the network by accident.
 */
export async function serverSecret(options: SecretOptions, io: CliIO, command: string): Promise<ClusterSecret> {
  const secretMode = parseSecretMode(options.secretMode) ?? 'handshake';
  const flag = flagPath(options);
  if (flag !== undefined) return fromFile(flag, '--swarm-key', secretMode);
  if (options.insecure) {
    if (options.secretMode !== undefined) throw new DfsError('ERR_USAGE', '--secret-mode needs a cluster secret; --insecure runs without one');
    return { secretMode, source: 'no secret (--insecure)' };
  }
  const env = envPath(io);
  if (env !== undefined) return fromFile(env, SWARM_KEY_ENV, secretMode);
  throw new DfsError(
    'ERR_USAGE',
    `${command} needs the cluster secret: --swarm-key FILE or ${SWARM_KEY_ENV}=FILE, or --insecure to run without one; ${HOW_TO_GET_ONE}`,
  );
}

/** What a server started with --insecure says at every start (stderr, and its log). */
export function insecureWarning(what: string): string {
  return `${what} runs without a cluster secret (--insecure): anyone who can reach it can join the cluster and read or write its data; make a secret with "dfs cluster init", copy it (mode 0600) to every host and start every master and node with --swarm-key FILE`;
}

/**
 * A client's secret: --swarm-key FILE (or --insecure), else DFS_SWARM_KEY, else the client
 * config's `swarmKey` (relative to the config's directory) or `"insecure": true`. A config
 * with neither is an error naming the fix. --secret-mode, else the config's `secretMode`.
 */
export async function clientSecret(options: SecretOptions, io: CliIO, configPath: string, config: ClientConfig): Promise<ClusterSecret> {
  const secretMode = parseSecretMode(options.secretMode) ?? config.secretMode ?? 'handshake';
  const flag = flagPath(options);
  if (flag !== undefined) return fromFile(flag, '--swarm-key', secretMode);
  if (options.insecure) return { secretMode, source: 'no secret (--insecure)' };
  const env = envPath(io);
  if (env !== undefined) return fromFile(env, SWARM_KEY_ENV, secretMode);
  const fromConfig = swarmKeyPathOf(config, configPath);
  if (fromConfig !== undefined && config.insecure) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `${configPath} sets both "swarmKey" and "insecure": keep the one the cluster runs with`);
  }
  if (fromConfig !== undefined) return fromFile(fromConfig, `"swarmKey" in ${configPath}`, secretMode);
  if (config.insecure) return { secretMode, source: `no secret ("insecure": true in ${configPath})` };
  throw new DfsError(
    'ERR_USAGE',
    `${configPath} names no cluster secret: add "swarmKey": "<path to the cluster's swarm.key>" to it (or give --swarm-key FILE or ${SWARM_KEY_ENV}=FILE), or "insecure": true if the cluster runs without one`,
  );
}
