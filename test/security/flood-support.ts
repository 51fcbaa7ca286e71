import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LocalCluster } from '../../src/cluster/index.ts';
import { type DfsPeer, encodeWire, type Stream, waitForDrain } from '../../src/net/index.ts';
import type { TestCluster } from '../support/cluster.ts';

export const MiB = 1024 * 1024;

/** Resident set size of a process, from /proc/<pid>/status (VmRSS), in bytes. */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

export function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(0)} MB`;
}

/** Samples a process's RSS every `everyMs` from now until stop(): its level before, peak, and at stop. */
export class RssWatch {
  readonly pid: number;
  readonly before: number;
  peak: number;
  readonly #timer: NodeJS.Timeout;

  constructor(pid: number, everyMs = 50) {
    this.pid = pid;
    this.before = rssBytes(pid);
    this.peak = this.before;
    this.#timer = setInterval(() => this.sample(), everyMs);
    this.#timer.unref();
  }

  sample(): number {
    let now: number;
    try {
      now = rssBytes(this.pid);
    } catch {
      return 0; // the process is gone (the test then fails on what it sees of it)
    }
    if (now > this.peak) this.peak = now;
    return now;
  }

  stop(): { before: number; peak: number; after: number } {
    clearInterval(this.#timer);
    const after = this.sample();
    return { before: this.before, peak: this.peak, after };
  }
}

/**
 * A peer for the attacker, in this process. It holds the cluster's secret when the fixture
 * has one (an insider: the bounds must hold against peers that may connect).
 */
export function attackerPeer(cluster: LocalCluster): Promise<DfsPeer> {
  return cluster.createClientPeer();
}

/** The leader's name, address, pid and term. */
export async function leaderOf(t: TestCluster): Promise<{ name: string; addr: string; pid: number; term: number }> {
  const status = await t.client((c) => c.waitForLeader(15_000));
  const name = status.name;
  const spec = t.cluster.spec.masters.find((m) => m.name === name)!;
  const pid = t.cluster.pids()[name];
  if (pid === undefined) throw new Error(`no pid for ${name}`);
  return { name, addr: spec.addr, pid, term: status.term };
}

/** When and how a stream of the attacker's ended. */
export interface StreamFate {
  readonly opened: boolean;
  closedAt?: number;
  /** The error it closed with (a reset by the other side shows as one), if any. */
  error?: string;
}

/** Watches `stream` for its end. */
export function watch(stream: Stream): StreamFate {
  const fate: StreamFate = { opened: true };
  if (stream.status !== 'open') {
    // Closed already (refused as soon as it was negotiated): its close event has been and gone.
    fate.closedAt = performance.now();
    fate.error = `stream ${stream.status}`;
    return fate;
  }
  stream.addEventListener(
    'close',
    (evt) => {
      fate.closedAt = performance.now();
      if (evt.error) fate.error = `${evt.error.name}: ${evt.error.message}`;
    },
    { once: true },
  );
  return fate;
}

function isOpen(stream: Stream): boolean {
  return stream.status === 'open';
}

/** Sends `bytes` of zeros after `header`, with backpressure; stops quietly when the stream ends. */
export async function sendRaw(stream: Stream, header: Uint8Array | undefined, bytes: number): Promise<number> {
  let sent = 0;
  try {
    if (header && !stream.send(header)) await waitForDrain(stream);
    const piece = new Uint8Array(256 * 1024);
    while (sent < bytes && isOpen(stream)) {
      const n = Math.min(piece.byteLength, bytes - sent);
      const accepted = stream.send(n === piece.byteLength ? piece : piece.subarray(0, n));
      sent += n;
      if (!accepted) await waitForDrain(stream);
    }
  } catch {
    // the other side reset the stream: what we wanted to see
  }
  return sent;
}

export function frameHeader(length: number): Uint8Array {
  const header = new Uint8Array(4);
  new DataView(header.buffer).setUint32(0, length, false);
  return header;
}

/** A request frame of the multiplexed RPC (`{ id, req }`, length-prefixed), as RpcChannel writes it. */
export function muxRequestFrame(id: number, req: unknown): Uint8Array {
  const payload = new TextEncoder().encode(encodeWire({ id, req }));
  const frame = new Uint8Array(4 + payload.byteLength);
  new DataView(frame.buffer).setUint32(0, payload.byteLength, false);
  frame.set(payload, 4);
  return frame;
}

export interface UnfinishedFlood {
  readonly fates: StreamFate[];
  /** Streams the target refused to open (a per-connection bound). */
  refusedOpens: number;
  /** Bytes the attacker's streams took (sent, or buffered on its side until the reset), all together. */
  accepted: number;
  /** Resolves when every stream has been opened and its bytes sent (or it was reset meanwhile). */
  readonly sent: Promise<void>;
  /** Stops the trickles. */
  stop(): void;
}

/**
 * Opens `streams` streams of `protocol` to `addr`; on each, a frame header announcing `declared`
 * bytes and then `send` of them, and then silence or, on every other stream when `trickle`,
 * one byte a second: frames that never finish.
 */
export function unfinishedFrames(
  attacker: DfsPeer,
  addr: string,
  protocol: string,
  options: { streams: number; declared: number; send: number; trickle?: boolean },
): UnfinishedFlood {
  const fates: StreamFate[] = [];
  const trickles: NodeJS.Timeout[] = [];
  const flood: UnfinishedFlood = {
    fates,
    refusedOpens: 0,
    accepted: 0,
    sent: (async () => {
      // One connection first, which every stream then shares (streams opened at once on no
      // connection yet would each start a dial).
      await attacker.dialProtocol(addr, protocol, { timeoutMs: 10_000 }).then((s) => s.abort(new Error('connected')), () => {});
      await Promise.all(
        Array.from({ length: options.streams }, async (_, i) => {
          let stream: Stream;
          try {
            stream = await attacker.dialProtocol(addr, protocol, { timeoutMs: 10_000, maxOutboundStreams: 4096 });
          } catch {
            flood.refusedOpens++;
            fates.push({ opened: false });
            return;
          }
          fates.push(watch(stream));
          const sent = await sendRaw(stream, frameHeader(options.declared), options.send);
          flood.accepted += sent;
          if (options.trickle && i % 2 === 1 && isOpen(stream)) {
            const timer = setInterval(() => {
              if (!isOpen(stream)) return clearInterval(timer);
              try {
                stream.send(Uint8Array.of(0));
              } catch {
                clearInterval(timer);
              }
            }, 1_000);
            trickles.push(timer);
          }
        }),
      );
    })(),
    stop() {
      for (const t of trickles) clearInterval(t);
    },
  };
  return flood;
}

/** Resolves once every opened stream in `fates` has closed, or after `timeoutMs`. */
export async function allClosed(fates: readonly StreamFate[], timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (fates.some((f) => f.opened && f.closedAt === undefined)) {
    if (performance.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}

/**
 * What a normal client gets while a flood runs: `dfs status` (every master's status), a
 * mkdir and a listing through the ordinary MetaClient, over and over until `stop` fires.
 */
export async function probeClients(t: TestCluster, tag: string, stop: AbortSignal): Promise<{ rounds: number; failures: string[]; slowestMs: number }> {
  const out = { rounds: 0, failures: [] as string[], slowestMs: 0 };
  await t.client(async (c) => {
    for (let i = 0; !stop.aborted; i++) {
      const started = performance.now();
      try {
        const statuses = await c.statusAll();
        const down = statuses.filter((s) => s.status === undefined);
        if (down.length > 0) throw new Error(`status: ${down.map((s) => s.error).join('; ')}`);
        await c.write({ op: 'mkdir', path: `/${tag}/probe-${i}`, parents: true });
        const listed = await c.list(`/${tag}`);
        if (!listed.entries.some((e) => e.name === `probe-${i}`)) throw new Error(`probe-${i} not listed`);
        out.rounds++;
      } catch (err) {
        out.failures.push(String(err));
      }
      out.slowestMs = Math.max(out.slowestMs, performance.now() - started);
      await sleep(100);
    }
  });
  return out;
}

export function report(what: string, figures: { before: number; peak: number; after: number }, budget: number, extra = ''): void {
  console.log(
    `[flood] ${what}: RSS before ${mb(figures.before)}, peak ${mb(figures.peak)} (+${mb(figures.peak - figures.before)}), after ${mb(figures.after)}; budget +${mb(budget)}${extra ? `; ${extra}` : ''}`,
  );
}
