/**
 * V8 settings for dfs processes (why and measurements: src/cli/entry.ts). In their own module so
 * that benchmarks can start their yardsticks with the same settings.
 */

/** Storage nodes and masters: given at process start (they size the heap). */
export const SERVER_V8_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--initial-old-space-size=128'];

/** Client commands: set at run time, before anything is loaded (these work after start). */
export const CLIENT_RUNTIME_V8_FLAGS = '--semi-space-growth-factor=1 --expose-gc';
