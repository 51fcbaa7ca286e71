import fc from 'fast-check';
import { Uint8ArrayList } from 'uint8arraylist';
import { it } from 'vitest';
import { isDfsError, type ErrorCode } from '../../src/errors/index.ts';
import { decodeJson } from '../../src/net/index.ts';

/**
 * Shared machinery of the wire-decoder fuzz tests (test/fuzz/*.test.ts).
 *
 * Every decoder of bytes or JSON that another process sends is fed (1) arbitrary inputs and
 * (2) valid messages, mutated: a field dropped, its type changed, huge / negative / non-finite
 * numbers, very long strings, deep nesting, prototype keys, then truncation and bit flips of the
 * encoded bytes. The property each time: the decoder returns something that meets its own
 * contract, or fails with a DfsError (a clean error), never another error type, and no input
 * takes longer than MAX_INPUT_MS.
 *
 * Knobs (env): DFS_FUZZ_RUNS inputs per property (default 10,000), DFS_SEED to replay a run.
 * Each property prints `[fuzz] <decoder>: N inputs, seed S` first.
 */

/** The bound on one input: a decoder that takes longer on one input is a hang in the making. */
export const MAX_INPUT_MS = 100;

export const DEFAULT_FUZZ_RUNS = 10_000;

/** Inputs per property: DFS_FUZZ_RUNS overrides the default. */
export function fuzzRuns(defaultRuns: number = DEFAULT_FUZZ_RUNS): number {
  const fromEnv = Number(process.env.DFS_FUZZ_RUNS);
  return Number.isSafeInteger(fromEnv) && fromEnv > 0 ? fromEnv : defaultRuns;
}

/**
 * A test timeout that grows with DFS_FUZZ_RUNS. At the default a property takes 1-8 s of CPU;
 * the margin is for a machine shared with other work (wall time). The per-input bound is what
 * catches a slow decoder, not this.
 */
export function fuzzTimeout(baseMs = 180_000): number {
  return Math.ceil(baseMs * Math.max(1, fuzzRuns() / DEFAULT_FUZZ_RUNS));
}

/**
 * fast-check parameters for one fuzz property: the seed is DFS_SEED when set (replay), else
 * fresh; it is printed first so that any failing run can be replayed exactly.
 */
export function fuzzParams<T = unknown>(decoder: string, runs: number = fuzzRuns()): fc.Parameters<T> {
  const fromEnv = process.env.DFS_SEED;
  const seed = fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
  console.log(`[fuzz] ${decoder}: ${runs} inputs, seed ${seed} (replay with DFS_SEED=${seed})`);
  return {
    seed,
    numRuns: runs,
    plugins: [
      // Shrinking a large mutated input can take long: it stops at the time limit (the best
      // counterexample so far is reported), as does a run too slow to finish (a failure).
      fc.interruptAfterTimeLimit(fuzzTimeout() - 15_000, { failOnInterrupt: true }) as fc.Plugin<T>,
      () => ({ onAllRunsComplete: (details: fc.RunDetails<T>) => report(decoder, seed, details) }),
    ],
  };
}

/**
 * Replaces fast-check's report, which prints the whole counterexample: one of a few MB (a
 * mutation made a long string or array) makes that report itself fail or take minutes.
 */
function report<T>(decoder: string, seed: number, details: fc.RunDetails<T>): void {
  if (!details.failed) return;
  const replay = `DFS_SEED=${seed} and the same DFS_FUZZ_RUNS (fast-check path ${details.counterexamplePath ?? 'n/a'})`;
  if (details.counterexample === null) {
    throw new Error(`[fuzz] ${decoder}: ${details.interrupted ? 'interrupted: too slow to finish' : 'failed'} after ${details.numRuns} inputs; replay with ${replay}`);
  }
  const cause = details.errorInstance;
  const why = cause instanceof Error ? `${cause.message}${cause.cause instanceof Error ? ` <- ${cause.cause.constructor.name}: ${cause.cause.message.slice(0, 300)}` : ''}` : String(cause);
  throw new Error(
    `[fuzz] ${decoder}: failed after ${details.numRuns} inputs (${details.numShrinks} shrinks${details.interrupted ? ', shrinking interrupted' : ''}): ${why}\n` +
      `counterexample: ${preview(details.counterexample)}\nreplay with ${replay}`,
    { cause },
  );
}

/** A bounded rendering of any value for a failure report. */
export function preview(value: unknown, budget = 2_000): string {
  let out = '';
  const put = (s: string): boolean => {
    out += s;
    return out.length < budget;
  };
  const walk = (v: unknown, depth: number): boolean => {
    if (depth > 12) return put('…');
    if (typeof v === 'string') return put(JSON.stringify(v.length > 200 ? `${v.slice(0, 200)}…(${v.length} chars)` : v));
    if (v instanceof Uint8Array) {
      const head = v.subarray(0, 300);
      let shown: string;
      try {
        shown = `utf8 ${JSON.stringify(new TextDecoder('utf-8', { fatal: true }).decode(head))}`;
      } catch {
        shown = `hex ${Buffer.from(head.buffer, head.byteOffset, head.byteLength).toString('hex')}`;
      }
      return put(`bytes(${v.length}) ${shown}${v.length > 300 ? '…' : ''}`);
    }
    if (typeof v !== 'object' || v === null) return put(typeof v === 'bigint' ? `${v}n` : String(v));
    if (Array.isArray(v)) {
      if (!put('[')) return false;
      for (let i = 0; i < v.length; i++) {
        if (i >= 20) return put(`…(${v.length} items)]`);
        if ((i > 0 && !put(',')) || !walk(v[i], depth + 1)) return false;
      }
      return put(']');
    }
    if (!put('{')) return false;
    let i = 0;
    for (const k of Object.keys(v)) {
      if ((i++ > 0 && !put(',')) || !put(`${JSON.stringify(k)}:`) || !walk((v as Record<string, unknown>)[k], depth + 1)) return false;
    }
    return put('}');
  };
  walk(value, 0);
  return out.length > budget ? `${out.slice(0, budget)}…` : out;
}

// ---------------------------------------------------------------------------------------------
// Outcomes, clean errors and the time bound
// ---------------------------------------------------------------------------------------------

export type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

function describeError(err: unknown): string {
  if (err instanceof Error) return `${err.constructor.name}: ${err.message.slice(0, 300)}${whereIn(err)}`;
  try {
    return `${typeof err} ${String(err).slice(0, 300)}`;
  } catch {
    return typeof err;
  }
}

/** ` at src/...:line` for the innermost frame of `err` in src/, if its stack shows one. */
function whereIn(err: Error): string {
  const at = /\b(src\/[\w./-]+:\d+)/.exec(err.stack ?? '');
  return at ? ` at ${at[1]}` : '';
}

function tooSlow(what: string, first: number, second: number): Error {
  return new Error(`${what} took ${first.toFixed(1)} ms, then ${second.toFixed(1)} ms again, of CPU on one input (bound: ${MAX_INPUT_MS} ms)`);
}

/**
 * Milliseconds of CPU this process spent (all threads: GC included) since `since`. The bound is
 * on CPU time, not wall time: the machine is shared, and a descheduled process is no slower
 * decoder. A hang that waits (a promise that never settles) is caught by runAsync's HANG_MS.
 */
function cpuMs(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
}

/**
 * Runs `fn` on one input and returns what it did. Fails (throws) if it took over MAX_INPUT_MS
 * of CPU twice in a row: the second run tells a slow input (slow every time) from a one-off
 * (a major GC, JIT). `fn` must not depend on earlier runs.
 */
export function run<T>(what: string, fn: () => T): Outcome<T> {
  const t0 = process.cpuUsage();
  let outcome: Outcome<T>;
  try {
    outcome = { ok: true, value: fn() };
  } catch (error) {
    outcome = { ok: false, error };
  }
  const ms = cpuMs(t0);
  if (ms > MAX_INPUT_MS) {
    const t1 = process.cpuUsage();
    try {
      fn();
    } catch {
      // the outcome of the first run is the one reported
    }
    const again = cpuMs(t1);
    if (again > MAX_INPUT_MS) throw tooSlow(what, ms, again);
  }
  return outcome;
}

/** A promise that does not settle within this (wall clock, the machine is shared) is a hang. */
export const HANG_MS = 5_000;

async function settle<T>(what: string, fn: () => Promise<T>): Promise<{ outcome: Outcome<T>; ms: number }> {
  const t0 = process.cpuUsage();
  let timer: NodeJS.Timeout | undefined;
  const hung = new Error(`${what} hung: no answer within ${HANG_MS} ms`);
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(hung), HANG_MS);
  });
  let outcome: Outcome<T>;
  try {
    const value = await Promise.race([fn(), hang]);
    outcome = { ok: true, value };
  } catch (error) {
    if (error === hung) throw error;
    outcome = { ok: false, error };
  } finally {
    clearTimeout(timer);
  }
  return { outcome, ms: cpuMs(t0) };
}

/**
 * run() for an async decoder: also fails if the promise never settles (HANG_MS). Its CPU time
 * includes whatever else the process did meanwhile (timers, other streams): none, in these tests.
 */
export async function runAsync<T>(what: string, fn: () => Promise<T>): Promise<Outcome<T>> {
  const first = await settle(what, fn);
  if (first.ms > MAX_INPUT_MS) {
    const second = await settle(what, fn);
    if (second.ms > MAX_INPUT_MS) throw tooSlow(what, first.ms, second.ms);
  }
  return first.outcome;
}

/** Throws unless `error` is a DfsError (with one of `codes`, when given): a clean error. */
export function expectCleanError(what: string, error: unknown, codes?: readonly ErrorCode[]): void {
  if (!isDfsError(error)) throw new Error(`${what} threw a non-DfsError: ${describeError(error)}`, { cause: error });
  if (codes !== undefined && !codes.includes(error.code)) {
    throw new Error(`${what} threw ${error.code} (${error.message.slice(0, 200)}), expected one of ${codes.join(', ')}`, { cause: error });
  }
}

/** Throws unless `condition`: a contract check on what a decoder returned. */
export function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`contract violated: ${what}`);
}

/**
 * Deep equality of JSON-like values (Uint8Arrays compared by content; key order ignored; -0
 * equals 0, as JSON cannot tell them apart). Iterative: a decoder may return values nested far
 * deeper than the stack allows recursion.
 */
export function deepEqual(x: unknown, y: unknown): boolean {
  const stack: Array<[unknown, unknown]> = [[x, y]];
  while (stack.length > 0) {
    const [a, b] = stack.pop()!;
    if (a === b || Object.is(a, b)) continue;
    if (a instanceof Uint8Array || b instanceof Uint8Array) {
      if (!(a instanceof Uint8Array && b instanceof Uint8Array) || a.length !== b.length) return false;
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
      continue;
    }
    if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
    if (Array.isArray(a) !== Array.isArray(b)) return false;
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    for (const k of ka) {
      if (!Object.hasOwn(b, k)) return false;
      stack.push([(a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]]);
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Arbitrary inputs
// ---------------------------------------------------------------------------------------------

const encoder = new TextEncoder();

export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Arbitrary JSON-ish values: what JSON.parse of some other peer's message could give. */
export const anyJsonValue: fc.Arbitrary<unknown> = fc.jsonValue({ maxDepth: 4 });

/** Arbitrary values with prototype keys and odd types mixed in (for value-level decoders). */
export const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: anyJsonValue },
  { weight: 2, arbitrary: fc.anything({ maxDepth: 3, withNullPrototype: true, withObjectString: true, withBigInt: true, withTypedArray: true }) },
  { weight: 1, arbitrary: fc.dictionary(fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'type', 'op', 'ok'), anyJsonValue).map(ownKeys) },
);

/** Arbitrary bytes, biased towards what a JSON decoder meets: JSON text, some of it broken. */
export const anyBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 300 }) },
  { weight: 2, arbitrary: anyJsonValue.map((v) => utf8(JSON.stringify(v) ?? 'null')) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }).map(utf8) },
);

/**
 * A copy of `value` in which keys like "__proto__" are own data properties (as JSON.parse makes
 * them), not prototype setters.
 */
function ownKeys(value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Mutations of valid messages
// ---------------------------------------------------------------------------------------------

/**
 * Raw JSON tokens JSON.stringify cannot write: they stand as marker strings in the mutated
 * value and are spliced into the text by toJsonText. 1e999 parses to Infinity; deep nesting is
 * spliced as text because JSON.stringify itself overflows the stack on it.
 */
const MARK = '\u2063';
const RAW_TOKENS: readonly string[] = ['1e999', '-1e999', '123456789012345678901234567890', '-0', '1e-400', '0.1e1', '9007199254740993'];

function rawToken(token: string): string {
  return `${MARK}raw:${token}${MARK}`;
}

function deepMarker(depth: number, kind: 'array' | 'object'): string {
  return `${MARK}deep:${kind}:${depth}${MARK}`;
}

const MARKER_RE = new RegExp(`"${MARK}(raw|deep):([^${MARK}"]*)${MARK}"`, 'g');

/** JSON text of a (mutated) value, with the raw-token and deep-nesting markers spliced in. */
export function toJsonText(value: unknown): string {
  const text = JSON.stringify(value) ?? 'null';
  if (!text.includes(MARK)) return text;
  return text.replace(MARKER_RE, (_all, kind: string, arg: string) => {
    if (kind === 'raw') return arg;
    const [shape, n] = arg.split(':') as [string, string];
    const depth = Number(n);
    return shape === 'array' ? `${'['.repeat(depth)}0${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
  });
}

/** Small sizes mostly, medium ones sometimes, large ones rarely (large inputs cost the most to make). */
function sized(small: fc.Arbitrary<number>, medium: fc.Arbitrary<number>, large: fc.Arbitrary<number>): fc.Arbitrary<number> {
  return fc.oneof({ weight: 12, arbitrary: small }, { weight: 3, arbitrary: medium }, { weight: 1, arbitrary: large });
}

const PROTO_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', 'toJSON', 'then', 'length'] as const;

/** Replacement values: wrong types, edge numbers, long strings, deep nesting, prototype keys. */
const nastyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>(
    null,
    true,
    false,
    0,
    -1,
    0.5,
    -0.5,
    2 ** 31,
    2 ** 32,
    2 ** 53,
    2 ** 53 + 2,
    -(2 ** 53) - 2,
    2 ** 64,
    1e308,
    -1e308,
    Number.MIN_VALUE,
    '',
    '0',
    '-1',
    'NaN',
    'Infinity',
    '-Infinity',
    'true',
    'null',
    '__proto__',
    'constructor',
    '/',
    '//a/../b',
    '/a\u0000b',
    '\ud800',
    'é\u0301',
    [],
    {},
    [null],
    { toString: 0 },
    { valueOf: 'x', toString: 'y' },
    [{ toString: 0 }],
  ),
  fc.constantFrom(...RAW_TOKENS).map(rawToken),
  // Deeper than ~5,000 overflows a recursive walk (JSON.stringify, String()) of the value.
  fc.tuple(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(3, 64, 1_000) }, { weight: 1, arbitrary: fc.constantFrom(6_000, 10_000) }), fc.constantFrom('array' as const, 'object' as const)).map(([d, k]) => deepMarker(d, k)),
  // Just past the string bounds the schemas set (64, 128, 256, 1,024, 4,096 bytes, 8,192), and one far past.
  fc.tuple(sized(fc.constantFrom(33, 65, 129, 257), fc.constantFrom(1_025, 4_097, 8_193), fc.constant(100_000)), fc.constantFrom('x', '/', 'é', '\u{1F600}', 'a/')).map(([n, c]) => c.repeat(n)),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 20 }),
  fc.constantFrom(...PROTO_KEYS).chain((k) => anyJsonValue.map((v) => ownKeys({ [k]: v }))),
  anyJsonValue,
);

type Slot = { readonly parent: Record<string, unknown> | unknown[] | null; readonly key: string | number };

/** Every position in `root` (the root itself as parent null), parents before children. */
function slots(root: unknown): Slot[] {
  const out: Slot[] = [{ parent: null, key: 0 }];
  const walk = (value: unknown): void => {
    if (out.length > 400 || typeof value !== 'object' || value === null) return;
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length && out.length <= 400; i++) {
        out.push({ parent: value, key: i });
        walk(value[i]);
      }
    } else {
      for (const k of Object.keys(value)) {
        if (out.length > 400) break;
        out.push({ parent: value as Record<string, unknown>, key: k });
        walk((value as Record<string, unknown>)[k]);
      }
    }
  };
  walk(root);
  return out;
}

export interface JsonMutation {
  readonly kind: 'drop' | 'replace' | 'retype' | 'addKey' | 'deepen' | 'repeat' | 'longString' | 'numberEdge';
  readonly at: number;
  readonly value: unknown;
  readonly key: string;
  readonly n: number;
}

export const jsonMutation: fc.Arbitrary<JsonMutation> = fc.record({
  kind: fc.constantFrom('drop', 'replace', 'replace', 'retype', 'addKey', 'deepen', 'repeat', 'longString', 'numberEdge'),
  at: fc.nat(),
  value: nastyValue,
  key: fc.oneof(fc.constantFrom(...PROTO_KEYS), fc.string({ maxLength: 8 })),
  // Counts for repeat (array lengths just past the bounds: 16, 32, 64, 1,024, 4,096, 16,384),
  // deepen and longString (x4 characters): small ones mostly, large ones now and then.
  n: sized(fc.constantFrom(0, 1, 2, 17, 33, 65), fc.constantFrom(129, 257, 1_025), fc.constantFrom(4_097, 6_000, 16_385)),
}) as fc.Arbitrary<JsonMutation>;

function retype(value: unknown): unknown {
  if (typeof value === 'string') return value === '' ? 0 : Number.isNaN(Number(value)) ? [value] : Number(value);
  if (typeof value === 'number') return String(value);
  if (typeof value === 'boolean') return value ? 1 : 'false';
  if (value === null) return {};
  if (Array.isArray(value)) return ownKeys({ ...value });
  if (typeof value === 'object') return Object.values(value as object);
  return null;
}

function get(slot: Slot, root: unknown): unknown {
  return slot.parent === null ? root : (slot.parent as Record<string | number, unknown>)[slot.key];
}

/**
 * A copy of a replacement value: `root` is changed in place, and a later mutation may change
 * what an earlier one put there. Without the copy, that would change fast-check's generated
 * value (so shrinking and replay would see another input) or a constant of nastyValue (so every
 * later input in the process would: a `{}` growing a key per run).
 */
function fresh(value: unknown): unknown {
  return typeof value === 'object' && value !== null ? cloneJson(value) : value;
}

/** Applies one mutation to `root` (a fresh copy, changed in place); returns the new root. */
export function applyJsonMutation(root: unknown, m: JsonMutation): unknown {
  const all = slots(root);
  const slot = all[m.at % all.length]!;
  const current = get(slot, root);
  let next: unknown;
  switch (m.kind) {
    case 'drop':
      if (slot.parent === null) return undefined;
      if (Array.isArray(slot.parent)) slot.parent.splice(slot.key as number, 1);
      else delete slot.parent[slot.key as string];
      return root;
    case 'replace':
      next = fresh(m.value);
      break;
    case 'retype':
      next = retype(current);
      break;
    case 'addKey': {
      const target = typeof current === 'object' && current !== null && !Array.isArray(current) ? current : slot.parent !== null && !Array.isArray(slot.parent) ? slot.parent : null;
      if (target === null) {
        next = ownKeys({ [m.key]: fresh(m.value) });
        break;
      }
      Object.defineProperty(target, m.key, { value: fresh(m.value), enumerable: true, writable: true, configurable: true });
      return root;
    }
    case 'deepen':
      next = m.n > 1_000 ? deepMarker(m.n, m.at % 2 === 0 ? 'array' : 'object') : nest(current, Math.min(m.n, 200));
      break;
    case 'repeat':
      next = Array.isArray(current) && current.length > 0 ? Array.from({ length: m.n }, (_, i) => current[i % current.length]) : Array.from({ length: Math.min(m.n, 4_097) }, () => current);
      break;
    case 'longString':
      next = typeof current === 'string' ? current + 'x'.repeat(m.n * 4) : 'a'.repeat(m.n * 4);
      break;
    case 'numberEdge': {
      const edges = [-1, -(2 ** 53), 2 ** 53, 2 ** 53 + 2, 2 ** 64, 0.5, rawToken('1e999'), rawToken('-1e999'), rawToken('123456789012345678901234567890')];
      next = typeof current === 'number' ? (m.at % 3 === 0 ? current + 1 : m.at % 3 === 1 ? -current - 1 : edges[m.n % edges.length]) : edges[m.at % edges.length];
      break;
    }
  }
  if (slot.parent === null) return next;
  if (Array.isArray(slot.parent)) slot.parent[slot.key as number] = next;
  else Object.defineProperty(slot.parent, slot.key, { value: next, enumerable: true, writable: true, configurable: true });
  return root;
}

function nest(value: unknown, depth: number): unknown {
  let out = value;
  for (let i = 0; i < depth; i++) out = i % 2 === 0 ? [out] : { v: out };
  return out;
}

/** Deep copy of a JSON value (keeping "__proto__" as an own key). */
export function cloneJson<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** A valid value with 0..3 mutations: 0 keeps a share of valid messages, to check they pass. */
export function mutatedJson<T>(valid: fc.Arbitrary<T>, maxMutations = 3): fc.Arbitrary<{ valid: T; mutated: unknown; text: string; mutations: number }> {
  return fc.tuple(valid, fc.array(jsonMutation, { minLength: 0, maxLength: maxMutations })).map(([v, ms]) => {
    const { text, applied } = mutate(v, ms);
    return { valid: v, mutated: JSON.parse(text) as unknown, text, mutations: applied };
  });
}

/**
 * The largest mutated message: bigger ones (a deep nesting repeated thousands of times) make
 * parsing itself take longer than the time bound, which would say nothing about the decoder.
 * Every decoder here sits behind a frame limit anyway; this is well inside the smallest one
 * that matters (1 MiB).
 */
export const MAX_MUTATED_BYTES = 128 * 1024;

/**
 * toJsonText(value) if it is at most `limit` characters, else undefined, found without making
 * the text (a mutation can make a value whose text is gigabytes: a long string repeated).
 */
export function jsonTextWithin(value: unknown, limit: number = MAX_MUTATED_BYTES): string | undefined {
  return textSize(value, limit) <= limit ? toJsonText(value) : undefined;
}

/** `valid` with the mutations applied, dropping the last ones while the text is too large. */
function mutate(valid: unknown, ms: readonly JsonMutation[]): { root: unknown; text: string; applied: number } {
  for (let k = ms.length; ; k--) {
    let root: unknown = cloneJson(valid);
    for (const m of ms.slice(0, k)) root = applyJsonMutation(root, m);
    if (k === 0 || textSize(root, MAX_MUTATED_BYTES) <= MAX_MUTATED_BYTES) return { root, text: toJsonText(root), applied: k };
  }
}

/** About the length of toJsonText(value), counting no further than `limit`. */
function textSize(value: unknown, limit: number): number {
  let size = 0;
  const walk = (v: unknown): void => {
    if (size > limit) return;
    if (typeof v === 'string') {
      const deep = v.startsWith(MARK) ? /^\u2063deep:(\w+):(\d+)/.exec(v) : null;
      size += deep ? Number(deep[2]) * (deep[1] === 'array' ? 2 : 6) : Buffer.byteLength(v) + 2;
    } else if (typeof v === 'object' && v !== null) {
      size += 2;
      for (const [k, child] of Object.entries(v)) {
        size += k.length + 4;
        walk(child);
        if (size > limit) return;
      }
    } else {
      size += 24;
    }
  };
  walk(value);
  return size;
}

export interface ByteMutation {
  readonly kind: 'flip' | 'truncate' | 'delete' | 'insert' | 'duplicate' | 'set' | 'swap';
  readonly at: number;
  readonly len: number;
  readonly bytes: Uint8Array;
}

export const byteMutation: fc.Arbitrary<ByteMutation> = fc.record({
  kind: fc.constantFrom('flip', 'flip', 'truncate', 'delete', 'insert', 'duplicate', 'set', 'swap'),
  at: fc.nat(),
  len: fc.integer({ min: 1, max: 64 }),
  bytes: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.constantFrom(Uint8Array.of(0xff), Uint8Array.of(0xc0, 0x80), Uint8Array.of(0xed, 0xa0, 0x80), Uint8Array.of(0), utf8('"'), utf8('\\'), utf8('{'), utf8('\n'))),
}) as fc.Arbitrary<ByteMutation>;

export function applyByteMutation(input: Uint8Array, m: ByteMutation): Uint8Array {
  const n = input.length;
  const at = n === 0 ? 0 : m.at % (n + 1);
  const concat = (...parts: Uint8Array[]): Uint8Array => {
    const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  };
  switch (m.kind) {
    case 'flip': {
      if (n === 0) return input;
      const out = input.slice();
      const i = m.at % n;
      out[i] = out[i]! ^ (1 << (m.len % 8));
      return out;
    }
    case 'truncate':
      return input.slice(0, at);
    case 'delete':
      return concat(input.subarray(0, at), input.subarray(Math.min(n, at + m.len)));
    case 'insert':
      return concat(input.subarray(0, at), m.bytes, input.subarray(at));
    case 'duplicate':
      return concat(input.subarray(0, Math.min(n, at + m.len)), input.subarray(at));
    case 'set': {
      const out = input.slice();
      out.set(m.bytes.subarray(0, Math.max(0, n - at)), Math.min(at, n));
      return out;
    }
    case 'swap': {
      if (n < 2) return input;
      const out = input.slice();
      const i = m.at % n;
      const j = (m.at * 7 + m.len) % n;
      [out[i], out[j]] = [out[j]!, out[i]!];
      return out;
    }
  }
}

/**
 * Encoded bytes of a valid message, mutated: some inputs at the JSON level (then encoded), some
 * at the byte level (truncation, bit flips...), some both; a share is left intact.
 */
export function mutatedBytes<T>(valid: fc.Arbitrary<T>, encode: (value: T) => unknown): fc.Arbitrary<{ bytes: Uint8Array; intact: boolean; valid: T }> {
  return fc
    .tuple(valid, fc.array(jsonMutation, { maxLength: 3 }), fc.array(byteMutation, { maxLength: 3 }))
    .map(([v, jsonMs, byteMs]) => {
      const { text, applied } = mutate(encode(v), jsonMs);
      let bytes = utf8(text);
      for (const m of byteMs) bytes = applyByteMutation(bytes, m);
      return { bytes, intact: applied === 0 && byteMs.length === 0, valid: v };
    });
}

// ---------------------------------------------------------------------------------------------
// The two properties every JSON decoder gets
// ---------------------------------------------------------------------------------------------

export interface JsonDecoderSpec<T> {
  /** The decoder's name in test titles and [fuzz] lines. */
  readonly name: string;
  /** The decoder, on what JSON.parse made of a peer's message. */
  readonly decode: (value: unknown) => T;
  /** Valid messages (JSON values), to mutate; intact, the decoder must return them as they are. */
  readonly valid: fc.Arbitrary<unknown>;
  /** The codes a clean refusal may carry (any DfsError when absent). ERR_PROTOCOL is allowed for bytes that are not JSON. */
  readonly codes?: readonly ErrorCode[];
  /** What a returned value must satisfy besides `decode(result)` giving it back unchanged. */
  readonly contract?: (result: T) => void;
  /** Whether decode(result) must equal result (default true). */
  readonly idempotent?: boolean;
  /** Whether an intact valid message must come back equal to itself (default true). */
  readonly intactEqual?: boolean;
  /** Whether the decoder must accept this intact valid message (default: all of them). */
  readonly accepts?: (valid: unknown) => boolean;
}

type JsonInput = { readonly bytes: Uint8Array; readonly intact: boolean; readonly valid: unknown } | { readonly value: unknown; readonly intact: boolean; readonly valid: unknown };

/**
 * Declares the two fuzz properties of a JSON decoder: (1) arbitrary bytes (through decodeJson,
 * as every protocol reads a frame) and arbitrary values; (2) valid messages mutated at the JSON
 * level (then parsed) or at the byte level (then decodeJson). Each: a result that meets the
 * contract, or a clean error; never another error type; no input over MAX_INPUT_MS.
 */
export function fuzzJsonDecoder<T>(spec: JsonDecoderSpec<T>): void {
  const checkOne = (input: JsonInput): void => {
    const fromBytes = 'bytes' in input;
    const out = run(spec.name, () => spec.decode(fromBytes ? decodeJson(new Uint8ArrayList(input.bytes)) : input.value));
    if (!out.ok) {
      if (input.intact && (spec.accepts?.(input.valid) ?? true)) throw new Error(`${spec.name} refused an intact valid message`, { cause: out.error });
      const codes = spec.codes === undefined ? undefined : fromBytes ? [...spec.codes, 'ERR_PROTOCOL' as const] : spec.codes;
      expectCleanError(spec.name, out.error, codes);
      return;
    }
    const result = out.value;
    if (input.intact && spec.intactEqual !== false) check(deepEqual(result, input.valid), `${spec.name} changed an intact valid message`);
    if (spec.idempotent !== false) {
      const again = run(spec.name, () => spec.decode(result));
      if (!again.ok) throw new Error(`${spec.name} refuses what it returned`, { cause: again.error });
      check(deepEqual(again.value, result), `${spec.name} changes what it returned when given it again`);
    }
    spec.contract?.(result);
  };

  it(
    `${spec.name}: arbitrary bytes and values give a valid result or a DfsError`,
    () => {
      const input: fc.Arbitrary<JsonInput> = fc.oneof(
        anyBytes.map((bytes) => ({ bytes, intact: false, valid: undefined })),
        anyValue.map((value) => ({ value, intact: false, valid: undefined })),
      );
      fc.assert(
        fc.property(input, checkOne),
        fuzzParams(`${spec.name} (arbitrary bytes and values)`),
      );
    },
    fuzzTimeout(),
  );

  it(
    `${spec.name}: mutated valid messages give a valid result or a DfsError; intact ones pass`,
    () => {
      const input: fc.Arbitrary<JsonInput> = fc.oneof(
        { weight: 2, arbitrary: mutatedJson(spec.valid).map(({ valid, mutated, mutations }) => ({ value: mutated, intact: mutations === 0, valid })) },
        { weight: 1, arbitrary: mutatedBytes(spec.valid, (v) => v) },
      );
      fc.assert(
        fc.property(input, checkOne),
        fuzzParams(`${spec.name} (mutated messages)`),
      );
    },
    fuzzTimeout(),
  );
}
