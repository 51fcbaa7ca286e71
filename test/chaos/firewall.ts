import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Network partitions between processes on one loopback, by netfilter rules.
 *
 * Ports alone cannot tell processes apart: a connection has the listener's port at one end and
 * an ephemeral one at the other. So each cluster process runs as a uid of its own (as-uid.ts),
 * the first packet of every connection stamps the dialer's uid into the connection's conntrack
 * mark, and a cut "a → b" drops, in the OUTPUT hook,
 *   - packets on connections a dialed to b's port, in the original direction, and
 *   - packets on connections b dialed to a's port, in the reply direction:
 * exactly the packets a sends to b, on old connections and new ones. A one-way cut is TCP's
 * one-way: a's bytes stop reaching b; b's bytes still reach a on connections already open (a's
 * acks are lost, b retransmits, a receives), and no new connection opens either way.
 * The harness itself (uid 0, the clients) is never cut off.
 *
 * nft (one table of our own, deleted whole at the end) or else iptables (chains of our own).
 */
export interface Cut {
  readonly from: string;
  readonly to: string;
}

export interface FirewallTargets {
  readonly uidOf: (name: string) => number;
  readonly portOf: (name: string) => number;
}

export type FirewallTool = 'nft' | 'iptables';

const PREFIX = 'dfs_chaos_';

export class Firewall {
  readonly tool: FirewallTool;
  readonly #name: string;
  readonly #targets: FirewallTargets;
  readonly #uids: readonly number[];
  /** Active cuts, by the fault that made them. */
  readonly #cuts = new Map<string, readonly Cut[]>();
  #queue: Promise<void> = Promise.resolve();

  private constructor(tool: FirewallTool, uids: readonly number[], targets: FirewallTargets) {
    this.tool = tool;
    this.#name = `${PREFIX}${process.pid}`;
    this.#uids = uids;
    this.#targets = targets;
  }

  /** Which tool there is, or why partitions cannot be made here. */
  static async detect(): Promise<{ tool: FirewallTool } | { reason: string }> {
    if (process.getuid?.() !== 0) return { reason: 'not running as root (partitions need netfilter rules and a uid per process)' };
    for (const tool of ['nft', 'iptables'] as const) {
      try {
        await run(tool, ['--version']);
        return { tool };
      } catch {
        // not installed
      }
    }
    return { reason: 'neither nft nor iptables is installed (apt-get install -y nftables, or iptables)' };
  }

  /** Installs the tagging rules (before any cluster process starts, so every connection is stamped). */
  static async install(tool: FirewallTool, uids: readonly number[], targets: FirewallTargets): Promise<Firewall> {
    await removeStale(tool);
    const fw = new Firewall(tool, uids, targets);
    await fw.#install();
    return fw;
  }

  async #install(): Promise<void> {
    if (this.tool === 'nft') {
      const tags = this.#uids.map((u) => `    ct state new meta skuid ${u} ct mark set ${u}`).join('\n');
      await nft(`table inet ${this.#name} {
  chain tag {
    type filter hook output priority -150; policy accept;
${tags}
  }
  chain cuts {
    type filter hook output priority 0; policy accept;
  }
}`);
    } else {
      const tag = this.#chain('T');
      const cuts = this.#chain('C');
      await iptables(['-t', 'mangle', '-N', tag]);
      for (const u of this.#uids) await iptables(['-t', 'mangle', '-A', tag, '-m', 'conntrack', '--ctstate', 'NEW', '-m', 'owner', '--uid-owner', String(u), '-j', 'CONNMARK', '--set-mark', String(u)]);
      await iptables(['-t', 'mangle', '-I', 'OUTPUT', '-j', tag]);
      await iptables(['-N', cuts]);
      await iptables(['-I', 'OUTPUT', '-j', cuts]);
    }
  }

  #chain(suffix: 'T' | 'C'): string {
    return `DFSCHAOS${process.pid}${suffix}`;
  }

  /** Adds the cuts of one fault. */
  cut(id: string, cuts: readonly Cut[]): Promise<void> {
    this.#cuts.set(id, cuts);
    return this.#sync();
  }

  /** Removes the cuts of one fault. */
  heal(id: string): Promise<void> {
    if (!this.#cuts.delete(id)) return Promise.resolve();
    return this.#sync();
  }

  healAll(): Promise<void> {
    this.#cuts.clear();
    return this.#sync();
  }

  get active(): number {
    return this.#cuts.size;
  }

  /** Rewrites the cut rules to match #cuts (serialised: one rewrite at a time). */
  #sync(): Promise<void> {
    const next = this.#queue.then(() => this.#write());
    this.#queue = next.catch(() => {});
    return next;
  }

  async #write(): Promise<void> {
    const pairs = new Map<string, Cut>();
    for (const cuts of this.#cuts.values()) for (const c of cuts) pairs.set(`${c.from}>${c.to}`, c);
    const rules: string[][] = [];
    for (const { from, to } of pairs.values()) {
      const [uFrom, uTo] = [this.#targets.uidOf(from), this.#targets.uidOf(to)];
      const [pFrom, pTo] = [this.#targets.portOf(from), this.#targets.portOf(to)];
      rules.push(['original', String(uFrom), 'dport', String(pTo)], ['reply', String(uTo), 'sport', String(pFrom)]);
    }
    if (this.tool === 'nft') {
      const lines = [`flush chain inet ${this.#name} cuts`, ...rules.map(([dir, mark, side, port]) => `add rule inet ${this.#name} cuts ct mark ${mark} ct direction ${dir} tcp ${side} ${port} drop`)];
      await nft(lines.join('\n'));
    } else {
      const chain = this.#chain('C');
      await iptables(['-F', chain]);
      for (const [dir, mark, side, port] of rules) {
        await iptables(['-A', chain, '-m', 'connmark', '--mark', mark!, '-m', 'conntrack', '--ctdir', dir!.toUpperCase(), '-p', 'tcp', `--${side}`, port!, '-j', 'DROP']);
      }
    }
  }

  /** Removes everything this harness installed. */
  async destroy(): Promise<void> {
    await this.#queue;
    if (this.tool === 'nft') await nft(`delete table inet ${this.#name}`).catch(() => {});
    else await removeIptablesChains(this.#chain('T'), this.#chain('C')).catch(() => {});
  }

  /** The same, synchronously (the process is exiting). */
  destroySync(): void {
    try {
      if (this.tool === 'nft') execFileSync('nft', ['delete', 'table', 'inet', this.#name], { stdio: 'ignore' });
      else {
        for (const args of iptablesRemoval(this.#chain('T'), this.#chain('C'))) execFileSync('iptables', args, { stdio: 'ignore' });
      }
    } catch {
      // gone already
    }
  }
}

async function nft(script: string): Promise<void> {
  const child = execFile('nft', ['-f', '-']);
  const done = new Promise<void>((resolve, reject) => {
    let stderr = '';
    child.stderr?.on('data', (d) => (stderr += d));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`nft failed (${code}): ${stderr.trim()}`))));
    child.on('error', reject);
  });
  child.stdin!.end(script + '\n');
  await done;
}

async function iptables(args: string[]): Promise<void> {
  await run('iptables', ['-w', ...args]);
}

function iptablesRemoval(tag: string, cuts: string): string[][] {
  return [
    ['-w', '-t', 'mangle', '-D', 'OUTPUT', '-j', tag],
    ['-w', '-t', 'mangle', '-F', tag],
    ['-w', '-t', 'mangle', '-X', tag],
    ['-w', '-D', 'OUTPUT', '-j', cuts],
    ['-w', '-F', cuts],
    ['-w', '-X', cuts],
  ];
}

async function removeIptablesChains(tag: string, cuts: string): Promise<void> {
  for (const args of iptablesRemoval(tag, cuts)) await run('iptables', args).catch(() => {});
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Rules left by an earlier run that could not clean up (killed): removed if that run is gone. */
async function removeStale(tool: FirewallTool): Promise<void> {
  if (tool === 'nft') {
    const { stdout } = await run('nft', ['list', 'tables']).catch(() => ({ stdout: '' }));
    for (const m of stdout.matchAll(/table inet dfs_chaos_(\d+)/g)) {
      if (!alive(Number(m[1]))) await nft(`delete table inet dfs_chaos_${m[1]}`).catch(() => {});
    }
  } else {
    const { stdout } = await run('iptables', ['-w', '-t', 'mangle', '-S']).catch(() => ({ stdout: '' }));
    for (const m of new Set([...stdout.matchAll(/-N DFSCHAOS(\d+)T/g)].map((x) => x[1]!))) {
      if (!alive(Number(m))) await removeIptablesChains(`DFSCHAOS${m}T`, `DFSCHAOS${m}C`);
    }
  }
}
