/**
 * Sequential specifications for the linearizability checker (./linearizability.ts).
 *
 * Each model is written as a deterministic `apply(state, input) → { output, state }`, the plain
 * sequential semantics; `step` is derived from it: an operation is allowed iff its recorded output
 * is the one `apply` produces (any output when it is indeterminate), and it always has `apply`'s
 * effect. Deriving both from one function keeps the "what happens" and "what may be observed"
 * parts from disagreeing.
 */
import type { Model, Operation } from './linearizability.ts';

function stepBySpec<S, I, O>(apply: (state: S, input: I) => { output: O; state: S }) {
  return (state: S, input: I, output: O | undefined): { ok: boolean; state: S } => {
    const after = apply(state, input);
    return { ok: output === undefined || output === after.output, state: after.state };
  };
}

function quote(value: string | null): string {
  return value === null ? 'null' : JSON.stringify(value);
}

function describeOutput(output: string | null | undefined): string {
  return output === undefined ? '?' : quote(output);
}

// ---------------------------------------------------------------------------------------------
// Key-value store: each key is an independent register

export type KvInput =
  | { readonly op: 'get'; readonly key: string }
  | { readonly op: 'put'; readonly key: string; readonly value: string }
  /** Compare-and-swap; `expected: null` means "only if absent". */
  | { readonly op: 'cas'; readonly key: string; readonly expected: string | null; readonly value: string }
  | { readonly op: 'delete'; readonly key: string };

/**
 * get → the value (null when absent); put → 'ok'; cas → 'ok' | 'mismatch';
 * delete → 'ok' | 'not_found'.
 */
export type KvOutput = string | null;

/** One key's value; null when absent. */
export type KvRegister = string | null;

export function applyKv(register: KvRegister, input: KvInput): { output: KvOutput; state: KvRegister } {
  switch (input.op) {
    case 'get':
      return { output: register, state: register };
    case 'put':
      return { output: 'ok', state: input.value };
    case 'cas':
      return register === input.expected ? { output: 'ok', state: input.value } : { output: 'mismatch', state: register };
    case 'delete':
      return register === null ? { output: 'not_found', state: null } : { output: 'ok', state: null };
  }
}

export function describeKvOperation(input: KvInput, output: KvOutput | undefined): string {
  const result = describeOutput(output);
  switch (input.op) {
    case 'get':
      return `get(${input.key}) -> ${result}`;
    case 'put':
      return `put(${input.key}, ${quote(input.value)}) -> ${result}`;
    case 'cas':
      return `cas(${input.key}, ${quote(input.expected)} => ${quote(input.value)}) -> ${result}`;
    case 'delete':
      return `delete(${input.key}) -> ${result}`;
  }
}

function partitionByKey(history: readonly Operation<KvInput, KvOutput>[]): Operation<KvInput, KvOutput>[][] {
  const byKey = new Map<string, Operation<KvInput, KvOutput>[]>();
  for (const op of history) {
    const group = byKey.get(op.input.key);
    if (group) group.push(op);
    else byKey.set(op.input.key, [op]);
  }
  return [...byKey.values()];
}

/** The key-value store, partitioned by key: each partition is checked as a single register. */
export const kvModel: Model<KvRegister, KvInput, KvOutput> = {
  init: () => null,
  step: stepBySpec(applyKv),
  partition: partitionByKey,
  equal: (a, b) => a === b,
  // Prefixed so that the absent register and a stored string can never share a hash.
  hash: (register) => (register === null ? '-' : `+${register}`),
  describeOperation: describeKvOperation,
  describeState: quote,
};

export type KvMap = ReadonlyMap<string, string>;

function applyKvMap(map: KvMap, input: KvInput): { output: KvOutput; state: KvMap } {
  const before = map.get(input.key) ?? null;
  const after = applyKv(before, input);
  if (after.state === before) return { output: after.output, state: map };
  const next = new Map(map);
  if (after.state === null) next.delete(input.key);
  else next.set(input.key, after.state);
  return { output: after.output, state: next };
}

/**
 * The same store as one unpartitioned object (the whole map is the state). Much slower; it exists
 * to cross-check that partitioning by key changes no verdict.
 */
export const kvMapModel: Model<KvMap, KvInput, KvOutput> = {
  init: () => new Map(),
  step: stepBySpec(applyKvMap),
  equal: mapsEqual,
  hash: canonicalMap,
  describeOperation: describeKvOperation,
  describeState: canonicalMap,
};

function mapsEqual(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [key, value] of a) if (b.get(key) !== value) return false;
  return true;
}

function canonicalMap(map: ReadonlyMap<string, string>): string {
  return JSON.stringify([...map].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

// ---------------------------------------------------------------------------------------------
// File namespace: the metadata operations of dfs over a flat set of paths

export type FsInput =
  /** Create-if-absent. */
  | { readonly op: 'create'; readonly path: string; readonly content: string }
  /** Atomic replace (creates when absent). */
  | { readonly op: 'put'; readonly path: string; readonly content: string }
  | { readonly op: 'stat'; readonly path: string }
  | { readonly op: 'rm'; readonly path: string }
  /** Atomic rename, replacing `to` if it exists. */
  | { readonly op: 'mv'; readonly from: string; readonly to: string };

/**
 * create → 'ok' | 'exists'; put → 'ok'; stat → the content (null when absent);
 * rm → 'ok' | 'not_found'; mv → 'ok' | 'not_found' (source absent).
 */
export type FsOutput = string | null;

/** Path → content. */
export type FsState = ReadonlyMap<string, string>;

function withEntry(state: FsState, path: string, content: string | null): FsState {
  const next = new Map(state);
  if (content === null) next.delete(path);
  else next.set(path, content);
  return next;
}

export function applyFs(state: FsState, input: FsInput): { output: FsOutput; state: FsState } {
  switch (input.op) {
    case 'create':
      return state.has(input.path) ? { output: 'exists', state } : { output: 'ok', state: withEntry(state, input.path, input.content) };
    case 'put':
      return { output: 'ok', state: withEntry(state, input.path, input.content) };
    case 'stat':
      return { output: state.get(input.path) ?? null, state };
    case 'rm':
      return state.has(input.path) ? { output: 'ok', state: withEntry(state, input.path, null) } : { output: 'not_found', state };
    case 'mv': {
      const content = state.get(input.from);
      if (content === undefined) return { output: 'not_found', state };
      if (input.from === input.to) return { output: 'ok', state };
      return { output: 'ok', state: withEntry(withEntry(state, input.from, null), input.to, content) };
    }
  }
}

/** The paths an operation reads or writes. */
export function fsPathsOf(input: FsInput): string[] {
  return input.op === 'mv' ? [input.from, input.to] : [input.path];
}

export function describeFsOperation(input: FsInput, output: FsOutput | undefined): string {
  const result = describeOutput(output);
  switch (input.op) {
    case 'create':
    case 'put':
      return `${input.op}(${input.path}, ${quote(input.content)}) -> ${result}`;
    case 'stat':
    case 'rm':
      return `${input.op}(${input.path}) -> ${result}`;
    case 'mv':
      return `mv(${input.from}, ${input.to}) -> ${result}`;
  }
}

/**
 * Partitions by connected paths: two operations share a partition when they touch a common path,
 * transitively (an mv joins its two paths). This is safe by locality: the paths of different
 * partitions are disjoint and every operation touches paths of one partition only, so the
 * namespace is the product of independent objects, one per partition, and a history of a product
 * is linearizable iff its projection on each factor is. The cost of being safe: a history whose
 * mvs chain every path together is one partition.
 */
export function partitionByConnectedPaths(history: readonly Operation<FsInput, FsOutput>[]): Operation<FsInput, FsOutput>[][] {
  const parent = new Map<string, string>();
  // Path halving; every step moves a path closer to its root, so it ends.
  const find = (path: string): string => {
    let current = path;
    for (let up = parent.get(current); up !== undefined && up !== current; up = parent.get(current)) {
      const grandparent = parent.get(up) ?? up;
      parent.set(current, grandparent);
      current = grandparent;
    }
    return current;
  };
  for (const op of history) {
    const [first, ...rest] = fsPathsOf(op.input);
    if (!parent.has(first!)) parent.set(first!, first!);
    for (const path of rest) {
      if (!parent.has(path)) parent.set(path, path);
      const a = find(first!);
      const b = find(path);
      if (a !== b) parent.set(b, a);
    }
  }
  const byRoot = new Map<string, Operation<FsInput, FsOutput>[]>();
  for (const op of history) {
    const root = find(fsPathsOf(op.input)[0]!);
    const group = byRoot.get(root);
    if (group) group.push(op);
    else byRoot.set(root, [op]);
  }
  return [...byRoot.values()];
}

/** The file namespace, partitioned by connected paths. */
export const fsModel: Model<FsState, FsInput, FsOutput> = {
  init: () => new Map(),
  step: stepBySpec(applyFs),
  partition: partitionByConnectedPaths,
  equal: mapsEqual,
  hash: canonicalMap,
  describeOperation: describeFsOperation,
  describeState: canonicalMap,
};

/** The file namespace checked as one object: no partitioning. */
export const fsModelUnpartitioned: Model<FsState, FsInput, FsOutput> = {
  init: fsModel.init,
  step: fsModel.step,
  equal: fsModel.equal,
  hash: canonicalMap,
  describeOperation: describeFsOperation,
  describeState: canonicalMap,
};
