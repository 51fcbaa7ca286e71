/**
 * The dfs process (bin/dfs.ts): V8's memory flags for the command, then `main`.
 *
 * Client commands (put, get, ls...) favour a small footprint over peak speed: with V8's
 * --optimize-for-size a 512 MiB get peaked at 149 MiB RSS instead of 223, for about 10% more
 * time. Masters and storage nodes (and `cluster`, which starts them) keep V8's defaults: they
 * are long-lived and throughput-bound. The flag is set before main and its imports load, so the
 * heap never grows to the default sizes first.
 */
import { setFlagsFromString } from 'node:v8';

const SERVER_COMMANDS: ReadonlySet<string> = new Set(['master', 'node', 'cluster']);

// --expose-gc lets put and get collect the dead buffers of a transfer as they go (footprint.ts).
if (!SERVER_COMMANDS.has(process.argv[2] ?? '')) setFlagsFromString('--optimize-for-size --expose-gc');
const { main } = await import('./main.ts');
await main(process.argv.slice(2));
