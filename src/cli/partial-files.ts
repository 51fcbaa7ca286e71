import { unlinkSync } from 'node:fs';

/**
 * Local files being written (a get's `<target>.dfs-partial-<pid>`): removed however the process
 * ends. A failed command removes its own; this covers the rest — Ctrl-C (SIGINT), SIGTERM,
 * SIGHUP, and any process.exit (an internal error) — synchronously, since nothing async runs
 * after 'exit'. The handlers are installed only while a partial file exists, so they never
 * change how other commands (a foreground `cluster up`, which stops its processes on Ctrl-C)
 * handle signals.
 */
const partials = new Set<string>();

const SIGNALS = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 } as const;
type Signal = keyof typeof SIGNALS;

function removeAll(): void {
  for (const path of partials) {
    try {
      unlinkSync(path);
    } catch {
      // already gone (renamed into place, or removed by the command itself)
    }
  }
  partials.clear();
}

/** On a signal: the partial files go, and the process ends as the shell expects (128 + signal). */
function onSignal(signal: Signal): void {
  removeAll();
  process.exit(128 + SIGNALS[signal]);
}

const signalHandlers = new Map<Signal, () => void>((Object.keys(SIGNALS) as Signal[]).map((s) => [s, () => onSignal(s)]));

function install(): void {
  process.on('exit', removeAll);
  for (const [signal, handler] of signalHandlers) process.on(signal, handler);
}

function uninstall(): void {
  process.off('exit', removeAll);
  for (const [signal, handler] of signalHandlers) process.off(signal, handler);
}

/** Registers a partial file; call `untrackPartial` once it is renamed into place or removed. */
export function trackPartial(path: string): void {
  if (partials.size === 0) install();
  partials.add(path);
}

export function untrackPartial(path: string): void {
  if (!partials.delete(path)) return;
  if (partials.size === 0) uninstall();
}

/** The partial-file name for `target`: beside it (same filesystem, so the rename is atomic). */
export function partialPathOf(target: string, pid = process.pid): string {
  return `${target}.dfs-partial-${pid}`;
}
