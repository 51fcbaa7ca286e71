// Self time of V8 CPU profiles (.cpuprofile, from node --cpu-prof) by category, for the data
// path: where a client's or a node's CPU goes. `node bench/support/profile-summary.ts FILE...`.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}
interface Profile {
  startTime: number;
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Categories, first match wins: [name, test on "functionName url"]. */
const CATEGORIES: ReadonlyArray<readonly [string, RegExp]> = [
  ['idle', /^\(idle\) /],
  ['GC', /^\(garbage collector\) /],
  ['program (native, unattributed)', /^\(program\) /],
  ['socket write syscalls (kernel copy)', /^(writeBuffer|writev|writeUtf8String|writeLatin1String) $/],
  ['read syscalls (socket/file)', /^read $/],
  ['receipt signatures (ed25519 sign/verify)', /node:internal\/crypto\/(sig|keys)|keys\/ed25519|src\/net\/receipt\.ts/],
  ['FastCDC (cut scan)', /src\/chunker\/(cut|gear)\.ts/],
  ['BLAKE3', /blake|hash-wasm|src\/chunker\/blake3\.ts/i],
  ['Noise cipher (AES-256-GCM)', /noise-crypto\.ts|chacha|node:internal\/crypto\/cipher/i],
  ['Noise framing', /libp2p-noise/],
  ['yamux', /libp2p-yamux/],
  ['uint8arraylist / byte lists', /uint8arraylist|uint8arrays/],
  ['fs / disk (JS side)', /node:internal\/fs|src\/storage\/|src\/diskio\//],
  ['libp2p other (tcp, streams, utils)', /@libp2p|libp2p|it-|p-queue|race-signal|main-event/],
  ['node net/streams/timers', /node:internal\/(net|stream|streams|timers|process|event|abort|webstreams)|node:net|node:events/],
  ['dfs framing (src/net)', /src\/net\//],
  ['dfs chunk protocol', /src\/protocol\//],
  ['dfs client', /src\/client\/|src\/cli\//],
  ['dfs meta/raft/master', /src\/(meta|raft|master|node)\//],
  ['LevelDB', /level/i],
  ['module loading / start-up', /node:internal\/modules|node:internal\/bootstrap|typescript|amaro|strip/],
];

export type Summary = Map<string, number>;

/**
 * Self milliseconds by category, over every profile given; only samples inside `windowUs`
 * ([from, to] in V8's clock, microseconds: CLOCK_MONOTONIC on Linux, as process.hrtime), when given.
 */
export function summarise(files: readonly string[], windowUs?: readonly [number, number]): Summary {
  const out: Summary = new Map();
  for (const file of files) {
    const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
    const category = new Map<number, string>();
    for (const n of p.nodes) {
      const key = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url}`;
      category.set(n.id, CATEGORIES.find(([, re]) => re.test(key))?.[0] ?? (n.callFrame.url ? 'other JS' : `other native: ${n.callFrame.functionName}`));
    }
    let at = p.startTime;
    for (let i = 0; i < p.samples.length; i++) {
      at += p.timeDeltas[i] ?? 0;
      if (windowUs && (at < windowUs[0] || at > windowUs[1])) continue;
      const c = category.get(p.samples[i]!) ?? '?';
      // A sample's time is the delta to the next one (the last one gets none).
      const ms = (p.timeDeltas[i + 1] ?? 0) / 1000;
      out.set(c, (out.get(c) ?? 0) + ms);
    }
  }
  return out;
}

export function printSummary(title: string, summary: Summary): void {
  const busy = [...summary].filter(([c]) => c !== 'idle').reduce((n, [, ms]) => n + ms, 0);
  console.log(`\n## ${title}: ${(busy / 1000).toFixed(2)} s busy, ${((summary.get('idle') ?? 0) / 1000).toFixed(2)} s idle`);
  const rows = [...summary].filter(([c]) => c !== 'idle').sort((a, b) => b[1] - a[1]);
  for (const [c, ms] of rows) {
    if (ms / busy < 0.005) continue;
    console.log(`  ${c.padEnd(40)} ${(ms / 1000).toFixed(2).padStart(7)} s  ${((100 * ms) / busy).toFixed(1).padStart(5)}%`);
  }
}

/** The heaviest self-time functions (for when a category needs opening up). */
export function topFunctions(file: string, n = 25): Array<[string, number]> {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const names = new Map(p.nodes.map((x) => [x.id, `${x.callFrame.functionName || '(anonymous)'} ${x.callFrame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/src\//, 'src/')}`]));
  const self = new Map<string, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const k = names.get(p.samples[i]!) ?? '?';
    self.set(k, (self.get(k) ?? 0) + (p.timeDeltas[i + 1] ?? 0) / 1000);
  }
  return [...self].sort((a, b) => b[1] - a[1]).slice(0, n);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const files = process.argv.slice(2);
  printSummary(files.length === 1 ? files[0]! : `${files.length} profiles`, summarise(files));
  if (files.length === 1) for (const [k, ms] of topFunctions(files[0]!)) console.log(`  ${(ms / 1000).toFixed(2).padStart(7)} s  ${k}`);
}
