import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type CheckResult, checkOperations, isIndeterminate, type Model, type Operation } from './linearizability.ts';
import {
  type FsInput,
  type FsOutput,
  fsModel,
  type FsState,
  fsModelUnpartitioned,
  type KvInput,
  type KvMap,
  type KvOutput,
  kvMapModel,
  kvModel,
  partitionByConnectedPaths,
} from './linearizability-models.ts';
import { propertyRuns, testSeed } from './seed.ts';

// ---------------------------------------------------------------------------------------------
// History builders

type KvOp = Operation<KvInput, KvOutput>;
type FsOp = Operation<FsInput, FsOutput>;

function done<I, O>(clientId: number, input: I, call: number, ret: number, output: O): Operation<I, O> {
  return { clientId, input, call, return: ret, output };
}

/** An operation whose client never learned the outcome (timeout, crash). */
function timedOut<I, O>(clientId: number, input: I, call: number): Operation<I, O> {
  return { clientId, input, call, return: Infinity, output: undefined };
}

const get = (key: string): KvInput => ({ op: 'get', key });
const put = (key: string, value: string): KvInput => ({ op: 'put', key, value });
const cas = (key: string, expected: string | null, value: string): KvInput => ({ op: 'cas', key, expected, value });
const del = (key: string): KvInput => ({ op: 'delete', key });

const create = (path: string, content: string): FsInput => ({ op: 'create', path, content });
const replace = (path: string, content: string): FsInput => ({ op: 'put', path, content });
const stat = (path: string): FsInput => ({ op: 'stat', path });
const rm = (path: string): FsInput => ({ op: 'rm', path });
const mv = (from: string, to: string): FsInput => ({ op: 'mv', from, to });

// ---------------------------------------------------------------------------------------------
// Independent checks of the checker's answers

/**
 * The definition, by brute force: some order of all determinate operations plus any subset of the
 * indeterminate ones that the model accepts, in which an operation never precedes one that
 * returned before it was called. No event list, no cache, no partitions. Exponential: tiny
 * histories only.
 */
function bruteForceLinearizable<S, I, O>(model: Model<S, I, O>, history: readonly Operation<I, O>[]): boolean {
  const placed: Operation<I, O>[] = [];
  const used = history.map(() => false);
  const extend = (state: S, determinateLeft: number): boolean => {
    if (determinateLeft === 0) return true; // the remaining indeterminate ones never happened
    for (let i = 0; i < history.length; i++) {
      const op = history[i]!;
      if (used[i]) continue;
      if (placed.some((earlier) => op.return < earlier.call)) continue; // op finished before an earlier one started
      const { ok, state: next } = model.step(state, op.input, op.output);
      if (!ok) continue;
      used[i] = true;
      placed.push(op);
      const found = extend(next, determinateLeft - (isIndeterminate(op) ? 0 : 1));
      placed.pop();
      used[i] = false;
      if (found) return true;
    }
    return false;
  };
  return extend(model.init(), history.filter((op) => !isIndeterminate(op)).length);
}

/** An 'ok' result must carry a real witness: checks it against the model and real time. */
function expectValidWitness<S, I, O>(model: Model<S, I, O>, history: readonly Operation<I, O>[], result: CheckResult<I, O>): void {
  if (result.result !== 'ok') throw new Error(`expected ok, got ${JSON.stringify(result)}`);
  const seen = new Set<Operation<I, O>>();
  for (const linearization of result.linearizations) {
    let state = model.init();
    linearization.forEach((op, position) => {
      expect(history.includes(op)).toBe(true);
      expect(seen.has(op)).toBe(false);
      seen.add(op);
      const stepped = model.step(state, op.input, op.output);
      expect(stepped.ok).toBe(true);
      state = stepped.state;
      for (const earlier of linearization.slice(0, position)) expect(op.return < earlier.call).toBe(false);
    });
  }
  for (const op of history) if (!isIndeterminate(op)) expect(seen.has(op)).toBe(true);
}

function verdict(result: CheckResult<unknown, unknown>): 'ok' | 'illegal' | 'unknown' {
  return result.result;
}

// ---------------------------------------------------------------------------------------------
// Examples: key-value store

describe('checkOperations on a key-value store', () => {
  it('accepts the empty history and one made only of abandoned operations', () => {
    expect(checkOperations(kvModel, []).result).toBe('ok');
    const abandoned: KvOp[] = [timedOut(0, put('x', '1'), 0), timedOut(1, get('x'), 1)];
    const result = checkOperations(kvModel, abandoned);
    expectValidWitness(kvModel, abandoned, result);
  });

  it('accepts a sequential history', () => {
    const history: KvOp[] = [
      done(0, put('x', '1'), 0, 10, 'ok'),
      done(1, get('x'), 20, 30, '1'),
      done(0, del('x'), 40, 50, 'ok'),
      done(1, get('x'), 60, 70, null),
    ];
    expectValidWitness(kvModel, history, checkOperations(kvModel, history));
  });

  it('rejects a read that returns a value before any write of it started', () => {
    const history: KvOp[] = [done(1, get('x'), 0, 5, '1'), done(0, put('x', '1'), 10, 20, 'ok')];
    const result = checkOperations(kvModel, history);
    expect(result.result).toBe('illegal');
    if (result.result !== 'illegal') return;
    expect(result.partialLinearization).toEqual([]);
    expect(result.hint).toContain('get(x) -> "1"');
    expect(result.hint).toContain('rejected by the model');
  });

  it('rejects readers that see two concurrent writes in opposite orders', () => {
    const history: KvOp[] = [
      done(0, put('x', '1'), 0, 100, 'ok'),
      done(1, put('x', '2'), 0, 100, 'ok'),
      done(2, get('x'), 10, 20, '1'),
      done(2, get('x'), 30, 40, '2'),
      done(3, get('x'), 10, 20, '2'),
      done(3, get('x'), 30, 40, '1'),
    ];
    expect(checkOperations(kvModel, history).result).toBe('illegal');
  });

  it('accepts readers that see two concurrent writes in the same order', () => {
    const history: KvOp[] = [
      done(0, put('x', '1'), 0, 100, 'ok'),
      done(1, put('x', '2'), 0, 100, 'ok'),
      done(2, get('x'), 10, 20, '1'),
      done(2, get('x'), 30, 40, '2'),
      done(3, get('x'), 10, 20, '1'),
      done(3, get('x'), 30, 40, '2'),
    ];
    expectValidWitness(kvModel, history, checkOperations(kvModel, history));
  });

  it('rejects a stale read after a write completed', () => {
    const history: KvOp[] = [done(0, put('x', '1'), 0, 10, 'ok'), done(0, put('x', '2'), 20, 30, 'ok'), done(1, get('x'), 40, 50, '1')];
    const result = checkOperations(kvModel, history);
    expect(result.result).toBe('illegal');
    if (result.result !== 'illegal') return;
    expect(result.partialLinearization.map((op) => op.input)).toEqual([put('x', '1'), put('x', '2')]);
    expect(result.hint).toContain('get(x) -> "1" [client 1, 40..50] must take effect by its return at 50');
  });

  it('finds the order of two concurrent writes that the search tries last', () => {
    // Searched in call order, put 1 goes first; only "2 then 1" explains the read, reaching the
    // same set of writes in a second state, which the cache must not prune.
    const history: KvOp[] = [done(0, put('x', '1'), 0, 10, 'ok'), done(1, put('x', '2'), 0, 10, 'ok'), done(2, get('x'), 20, 30, '1')];
    expectValidWitness(kvModel, history, checkOperations(kvModel, history));
    expectValidWitness(kvMapModel, history, checkOperations(kvMapModel, history));
    expectValidWitness(kvMapModel, history, checkOperations({ ...kvMapModel, hash: undefined }, history));
  });

  it('accepts a read concurrent with a write returning either the old or the new value', () => {
    for (const seen of ['1', '2']) {
      const history: KvOp[] = [done(0, put('x', '1'), 0, 10, 'ok'), done(0, put('x', '2'), 20, 30, 'ok'), done(1, get('x'), 25, 35, seen)];
      expectValidWitness(kvModel, history, checkOperations(kvModel, history));
    }
  });

  it('treats intervals as closed: operations whose times touch are concurrent', () => {
    const touching: KvOp[] = [done(0, put('x', '1'), 0, 5, 'ok'), done(1, get('x'), 5, 6, null)];
    expectValidWitness(kvModel, touching, checkOperations(kvModel, touching));
    const after: KvOp[] = [done(0, put('x', '1'), 0, 5, 'ok'), done(1, get('x'), 6, 7, null)];
    expect(checkOperations(kvModel, after).result).toBe('illegal');
  });

  it('accepts an indeterminate write whose effect is seen later, even long after', () => {
    const history: KvOp[] = [timedOut(0, put('x', '1'), 0), done(1, get('x'), 20, 30, null), done(1, get('x'), 1000, 1010, '1')];
    expectValidWitness(kvModel, history, checkOperations(kvModel, history));
  });

  it('accepts an indeterminate write that is never seen', () => {
    const history: KvOp[] = [timedOut(0, put('x', '1'), 0), done(1, get('x'), 20, 30, null), done(1, get('x'), 40, 50, null)];
    const result = checkOperations(kvModel, history);
    expectValidWitness(kvModel, history, result);
  });

  it('accepts an indeterminate delete whose effect is never seen', () => {
    const history: KvOp[] = [done(0, put('x', '1'), 0, 10, 'ok'), timedOut(1, del('x'), 5), done(2, get('x'), 20, 30, '1')];
    expectValidWitness(kvModel, history, checkOperations(kvModel, history));
  });

  it('rejects an indeterminate write that is seen and then un-seen', () => {
    const history: KvOp[] = [timedOut(0, put('x', '1'), 0), done(1, get('x'), 10, 20, '1'), done(1, get('x'), 30, 40, null)];
    expect(checkOperations(kvModel, history).result).toBe('illegal');
  });

  it('rejects two compare-and-swaps from the same value that both succeed', () => {
    const bothWin: KvOp[] = [done(0, cas('x', null, 'a'), 0, 10, 'ok'), done(1, cas('x', null, 'b'), 0, 10, 'ok')];
    expect(checkOperations(kvModel, bothWin).result).toBe('illegal');
    const oneWins: KvOp[] = [done(0, cas('x', null, 'a'), 0, 10, 'ok'), done(1, cas('x', null, 'b'), 0, 10, 'mismatch'), done(2, get('x'), 20, 30, 'a')];
    expectValidWitness(kvModel, oneWins, checkOperations(kvModel, oneWins));
  });

  it('rejects a delete that finds nothing after a completed put', () => {
    const history: KvOp[] = [done(0, put('x', '1'), 0, 10, 'ok'), done(1, del('x'), 20, 30, 'not_found')];
    expect(checkOperations(kvModel, history).result).toBe('illegal');
  });

  it('checks keys independently and names the partition that fails', () => {
    const history: KvOp[] = [
      done(0, put('x', '1'), 0, 10, 'ok'),
      done(0, put('y', '1'), 0, 10, 'ok'),
      done(1, get('x'), 20, 30, '1'),
      done(1, get('y'), 20, 30, null),
    ];
    const result = checkOperations(kvModel, history);
    expect(result.result).toBe('illegal');
    if (result.result !== 'illegal') return;
    expect(result.partitionIndex).toBe(1); // partitions in first-seen key order: x, y
    expect(result.hint).toContain('get(y) -> null');
    expect(checkOperations(kvMapModel, history).result).toBe('illegal');
  });

  it('rejects malformed operations', () => {
    expect(() => checkOperations(kvModel, [done(0, get('x'), 10, 5, null)])).toThrow(RangeError);
    expect(() => checkOperations(kvModel, [done(0, get('x'), Number.NaN, 5, null)])).toThrow(RangeError);
    expect(() => checkOperations(kvModel, [{ clientId: 0, input: get('x'), call: 0, return: 5, output: undefined }])).toThrow(/indeterminate/);
  });
});

// ---------------------------------------------------------------------------------------------
// Examples: file namespace

describe('checkOperations on the file namespace', () => {
  it('rejects two concurrent creates of one path that both succeed', () => {
    const both: FsOp[] = [done(0, create('a', 'x'), 0, 10, 'ok'), done(1, create('a', 'y'), 0, 10, 'ok')];
    expect(checkOperations(fsModel, both).result).toBe('illegal');
    const one: FsOp[] = [done(0, create('a', 'x'), 0, 10, 'ok'), done(1, create('a', 'y'), 0, 10, 'exists'), done(2, stat('a'), 20, 30, 'x')];
    expectValidWitness(fsModel, one, checkOperations(fsModel, one));
  });

  it('accepts a rename observed atomically', () => {
    const history: FsOp[] = [
      done(0, replace('a', 'x'), 0, 5, 'ok'),
      done(0, mv('a', 'b'), 10, 20, 'ok'),
      done(1, stat('a'), 11, 12, 'x'),
      done(1, stat('b'), 13, 14, 'x'),
      done(1, stat('a'), 21, 22, null),
    ];
    expectValidWitness(fsModel, history, checkOperations(fsModel, history));
  });

  it('rejects a rename observed half-done: target visible and source still there', () => {
    const history: FsOp[] = [
      done(0, replace('a', 'x'), 0, 5, 'ok'),
      done(0, mv('a', 'b'), 10, 20, 'ok'),
      done(1, stat('b'), 11, 12, 'x'),
      done(1, stat('a'), 13, 14, 'x'),
    ];
    expect(checkOperations(fsModel, history).result).toBe('illegal');
  });

  it('rejects a rename observed half-done: the file briefly nowhere', () => {
    const history: FsOp[] = [
      done(0, replace('a', 'x'), 0, 5, 'ok'),
      done(0, mv('a', 'b'), 10, 20, 'ok'),
      done(1, stat('a'), 11, 12, null),
      done(1, stat('b'), 13, 14, null),
    ];
    expect(checkOperations(fsModel, history).result).toBe('illegal');
  });

  it('rejects a rename that did not replace its target', () => {
    const history: FsOp[] = [
      done(0, replace('a', 'new'), 0, 5, 'ok'),
      done(0, replace('b', 'old'), 0, 5, 'ok'),
      done(0, mv('a', 'b'), 10, 20, 'ok'),
      done(1, stat('b'), 30, 40, 'old'),
    ];
    expect(checkOperations(fsModel, history).result).toBe('illegal');
  });

  it('checks mv and rm outcomes against existence', () => {
    const missing: FsOp[] = [done(0, mv('a', 'b'), 0, 10, 'not_found'), done(0, rm('a'), 20, 30, 'not_found')];
    expectValidWitness(fsModel, missing, checkOperations(fsModel, missing));
    const phantom: FsOp[] = [done(0, mv('a', 'b'), 0, 10, 'ok')];
    expect(checkOperations(fsModel, phantom).result).toBe('illegal');
    const resurrected: FsOp[] = [done(0, create('a', 'x'), 0, 10, 'ok'), done(0, rm('a'), 20, 30, 'ok'), done(1, stat('a'), 40, 50, 'x')];
    expect(checkOperations(fsModel, resurrected).result).toBe('illegal');
  });

  it('accepts an indeterminate rename seen later, and rejects it seen half-applied', () => {
    const seenLater: FsOp[] = [done(0, replace('a', 'x'), 0, 5, 'ok'), timedOut(0, mv('a', 'b'), 10), done(1, stat('b'), 100, 110, 'x'), done(1, stat('a'), 120, 130, null)];
    expectValidWitness(fsModel, seenLater, checkOperations(fsModel, seenLater));
    const neverSeen: FsOp[] = [done(0, replace('a', 'x'), 0, 5, 'ok'), timedOut(0, mv('a', 'b'), 10), done(1, stat('a'), 100, 110, 'x'), done(1, stat('b'), 120, 130, null)];
    expectValidWitness(fsModel, neverSeen, checkOperations(fsModel, neverSeen));
    const halfApplied: FsOp[] = [done(0, replace('a', 'x'), 0, 5, 'ok'), timedOut(0, mv('a', 'b'), 10), done(1, stat('b'), 100, 110, 'x'), done(1, stat('a'), 120, 130, 'x')];
    expect(checkOperations(fsModel, halfApplied).result).toBe('illegal');
  });

  it('accepts an indeterminate create that a later create finds', () => {
    const history: FsOp[] = [timedOut(0, create('a', 'x'), 0), done(1, create('a', 'y'), 50, 60, 'exists'), done(1, stat('a'), 70, 80, 'x')];
    expectValidWitness(fsModel, history, checkOperations(fsModel, history));
  });

  it('partitions by connected paths, an mv joining its two paths', () => {
    const history: FsOp[] = [
      done(0, stat('a'), 0, 1, null),
      done(0, stat('c'), 0, 1, null),
      done(0, mv('a', 'b'), 2, 3, 'not_found'),
      done(0, stat('b'), 4, 5, null),
      done(0, mv('d', 'c'), 6, 7, 'not_found'),
      done(0, stat('e'), 8, 9, null),
    ];
    const partitions = partitionByConnectedPaths(history).map((p) => p.map((op) => history.indexOf(op)));
    expect(partitions).toEqual([[0, 2, 3], [1, 4], [5]]);
  });
});

// ---------------------------------------------------------------------------------------------
// Budget

/**
 * Many concurrent writes and a read of a value none of them wrote: illegal, but the search only
 * learns that after trying every order of the writes (the cache leaves n·2^n states).
 */
function pathologicalHistory(key: string, writers: number): KvOp[] {
  const history: KvOp[] = [];
  for (let i = 0; i < writers; i++) history.push(done(i, put(key, `v${i}`), i, 1000, 'ok'));
  history.push(done(writers, get(key), 0, 1000, 'never written'));
  return history;
}

describe('the search budget', () => {
  it('returns unknown when the step budget runs out', () => {
    const started = performance.now();
    const result = checkOperations(kvModel, pathologicalHistory('x', 24), { maxSteps: 20_000 });
    expect(result.result).toBe('unknown');
    if (result.result !== 'unknown') return;
    expect(result.reason).toMatch(/step budget of 20000 exhausted/);
    expect(result.steps).toBe(20_000);
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('returns unknown when the deadline passes', () => {
    const started = performance.now();
    const result = checkOperations(kvModel, pathologicalHistory('x', 24), { maxSteps: Infinity, timeoutMs: 100 });
    const elapsed = performance.now() - started;
    expect(result.result).toBe('unknown');
    if (result.result !== 'unknown') return;
    expect(result.reason).toMatch(/timeout of 100 ms/);
    expect(elapsed).toBeGreaterThanOrEqual(100);
    expect(elapsed).toBeLessThan(2_000);
  });

  it('still finds a violation in a small partition when a big one would exhaust the budget', () => {
    const history: KvOp[] = [...pathologicalHistory('x', 24), done(0, put('y', '1'), 2000, 2010, 'ok'), done(1, get('y'), 2020, 2030, null)];
    const result = checkOperations(kvModel, history, { maxSteps: 20_000 });
    expect(result.result).toBe('illegal');
    if (result.result === 'illegal') expect(result.partitionIndex).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

/** Sequential reference implementations, written independently of the models' `apply`. */
class ReferenceKv {
  readonly #values = new Map<string, string>();

  apply(input: KvInput): KvOutput {
    const current = this.#values.get(input.key) ?? null;
    if (input.op === 'get') return current;
    if (input.op === 'put') {
      this.#values.set(input.key, input.value);
      return 'ok';
    }
    if (input.op === 'cas') {
      if (current !== input.expected) return 'mismatch';
      this.#values.set(input.key, input.value);
      return 'ok';
    }
    return this.#values.delete(input.key) ? 'ok' : 'not_found';
  }
}

class ReferenceFs {
  readonly #files = new Map<string, string>();

  apply(input: FsInput): FsOutput {
    switch (input.op) {
      case 'stat':
        return this.#files.get(input.path) ?? null;
      case 'create':
        if (this.#files.has(input.path)) return 'exists';
        this.#files.set(input.path, input.content);
        return 'ok';
      case 'put':
        this.#files.set(input.path, input.content);
        return 'ok';
      case 'rm':
        return this.#files.delete(input.path) ? 'ok' : 'not_found';
      case 'mv': {
        const content = this.#files.get(input.from);
        if (content === undefined) return 'not_found';
        this.#files.delete(input.from);
        this.#files.set(input.to, content);
        return 'ok';
      }
    }
  }
}

const valueArb = fc.constantFrom('v0', 'v1', 'v2', 'v3');
const kvInputArb: fc.Arbitrary<KvInput> = fc.oneof(
  fc.record({ op: fc.constant('get' as const), key: fc.constantFrom('a', 'b', 'c') }),
  fc.record({ op: fc.constant('put' as const), key: fc.constantFrom('a', 'b', 'c'), value: valueArb }),
  fc.record({ op: fc.constant('cas' as const), key: fc.constantFrom('a', 'b', 'c'), expected: fc.option(valueArb, { nil: null }), value: valueArb }),
  fc.record({ op: fc.constant('delete' as const), key: fc.constantFrom('a', 'b', 'c') }),
);

const pathArb = fc.constantFrom('a', 'b', 'c', 'd');
const contentArb = fc.constantFrom('c0', 'c1', 'c2');
const fsInputArb: fc.Arbitrary<FsInput> = fc.oneof(
  fc.record({ op: fc.constant('create' as const), path: pathArb, content: contentArb }),
  fc.record({ op: fc.constant('put' as const), path: pathArb, content: contentArb }),
  fc.record({ op: fc.constant('stat' as const), path: pathArb }),
  fc.record({ op: fc.constant('rm' as const), path: pathArb }),
  fc.record({ op: fc.constant('mv' as const), from: pathArb, to: pathArb }),
);

/**
 * How an operation ends. Most complete; some time out before taking effect and are lost, some time
 * out before taking effect but take effect later (or never: they wait in limbo), and some take
 * effect and then time out before the client hears back.
 */
const FATE_LOST = 6;
const FATE_LIMBO = 7;
const FATE_TIMEOUT_AFTER_EFFECT = 8;

interface ScheduleStep<I> {
  /** Which client acts (modulo the number of clients): invoke, take effect, or return. */
  readonly client: number;
  /** The input it invokes, if it is idle. */
  readonly input: I;
  readonly fate: number;
  /** 2: the oldest operation in limbo takes effect now; 3: it is dropped for good. */
  readonly limbo: number;
}

interface Schedule<I> {
  readonly clients: number;
  /** Ticks per clock reading: coarse clocks make operations touch (closed intervals). */
  readonly clockResolution: number;
  readonly steps: readonly ScheduleStep<I>[];
}

function scheduleArb<I>(inputArb: fc.Arbitrary<I>): fc.Arbitrary<Schedule<I>> {
  return fc.record({
    clients: fc.integer({ min: 1, max: 5 }),
    clockResolution: fc.integer({ min: 1, max: 3 }),
    steps: fc.array(fc.record({ client: fc.nat(4), input: inputArb, fate: fc.nat(8), limbo: fc.nat(3) }), { maxLength: 150 }),
  });
}

interface InFlight<I, O> {
  readonly input: I;
  readonly call: number;
  readonly fate: number;
  effect?: { output: O };
}

/**
 * Runs the schedule against a sequential reference: every operation takes effect at one tick
 * strictly between its call and return, so the history is linearizable by construction.
 */
function simulate<I, O>(schedule: Schedule<I>, reference: { apply(input: I): O }): Operation<I, O>[] {
  const history: Operation<I, O>[] = [];
  const inFlight: Array<InFlight<I, O> | undefined> = Array.from({ length: schedule.clients }, () => undefined);
  const limbo: I[] = [];
  let tick = 0;
  const now = (): number => Math.floor(tick / schedule.clockResolution);
  for (const step of schedule.steps) {
    tick++;
    if (step.limbo === 2 && limbo.length > 0) reference.apply(limbo.shift()!);
    if (step.limbo === 3) limbo.shift();
    const clientId = step.client % schedule.clients;
    const op = inFlight[clientId];
    if (op === undefined) {
      inFlight[clientId] = { input: step.input, call: now(), fate: step.fate };
    } else if (op.effect === undefined && (op.fate === FATE_LOST || op.fate === FATE_LIMBO)) {
      if (op.fate === FATE_LIMBO) limbo.push(op.input);
      history.push(timedOut(clientId, op.input, op.call));
      inFlight[clientId] = undefined;
    } else if (op.effect === undefined) {
      op.effect = { output: reference.apply(op.input) };
    } else {
      history.push(op.fate === FATE_TIMEOUT_AFTER_EFFECT ? timedOut(clientId, op.input, op.call) : done(clientId, op.input, op.call, now(), op.effect.output));
      inFlight[clientId] = undefined;
    }
  }
  // Whatever is still in flight when the run ends never got an answer.
  inFlight.forEach((op, clientId) => {
    if (op !== undefined) history.push(timedOut(clientId, op.input, op.call));
  });
  return history;
}

const NEVER_WRITTEN = 'never written';

/** The history with one determinate read's output replaced by a value no operation writes. */
function corruptOneRead<I, O>(history: readonly Operation<I, O>[], isRead: (input: I) => boolean, pick: number): Operation<I, O>[] | undefined {
  const reads = history.flatMap((op, index) => (isRead(op.input) && !isIndeterminate(op) ? [index] : []));
  if (reads.length === 0) return undefined;
  const target = reads[pick % reads.length]!;
  return history.map((op, index) => (index === target ? { ...op, output: NEVER_WRITTEN as O } : op));
}

function propertyOptions(name: string, runs: number): fc.Parameters<unknown> {
  return { seed: testSeed(name), numRuns: propertyRuns(runs), endOnFailure: false };
}

// Without `hash` the cache compares states one by one within a bucket: a separate code path.
const kvMapModelWithoutHash: Model<KvMap, KvInput, KvOutput> = { ...kvMapModel, hash: undefined };
const fsModelWithoutHash: Model<FsState, FsInput, FsOutput> = { ...fsModel, hash: undefined };

describe('properties', () => {
  it('histories of a sequential key-value store run concurrently are linearizable; one corrupted read makes them illegal', () => {
    const options = propertyOptions('linearizability kv simulated', 200);
    fc.assert(
      fc.property(scheduleArb(kvInputArb), fc.nat(), (schedule, pick) => {
        const history = simulate(schedule, new ReferenceKv());
        expectValidWitness(kvModel, history, checkOperations(kvModel, history));
        const corrupted = corruptOneRead(history, (input) => input.op === 'get', pick);
        fc.pre(corrupted !== undefined);
        expect(checkOperations(kvModel, corrupted).result).toBe('illegal');
      }),
      options,
    );
  });

  it('histories of a sequential file namespace run concurrently are linearizable; one corrupted stat makes them illegal', () => {
    const options = propertyOptions('linearizability fs simulated', 200);
    fc.assert(
      fc.property(scheduleArb(fsInputArb), fc.nat(), (schedule, pick) => {
        const history = simulate(schedule, new ReferenceFs());
        expectValidWitness(fsModel, history, checkOperations(fsModel, history));
        const corrupted = corruptOneRead(history, (input) => input.op === 'stat', pick);
        fc.pre(corrupted !== undefined);
        expect(checkOperations(fsModel, corrupted).result).toBe('illegal');
      }),
      options,
    );
  });

  /** Tiny arbitrary histories: random intervals, random (often impossible) outputs, some timeouts. */
  function randomHistoryArb<I, O>(inputArb: fc.Arbitrary<I>, outputsFor: (input: I) => readonly O[]): fc.Arbitrary<Operation<I, O>[]> {
    const opArb = fc
      .record({ clientId: fc.nat(3), input: inputArb, call: fc.nat(12), length: fc.nat(6), pick: fc.nat(11), timesOut: fc.nat(7) })
      .map(({ clientId, input, call, length, pick, timesOut }): Operation<I, O> => {
        if (timesOut === 0) return timedOut(clientId, input, call);
        const outputs = outputsFor(input);
        return done(clientId, input, call, call + length, outputs[pick % outputs.length]!);
      });
    return fc.array(opArb, { maxLength: 7 });
  }

  it('agrees with a brute-force search on tiny key-value histories, partitioned or not', () => {
    const options = propertyOptions('linearizability kv oracle', 1000);
    const tally = { ok: 0, illegal: 0 };
    const kvOutputs = (input: KvInput): readonly KvOutput[] => {
      if (input.op === 'get') return [null, 'v0', 'v1'];
      if (input.op === 'put') return ['ok'];
      return input.op === 'cas' ? ['ok', 'mismatch'] : ['ok', 'not_found'];
    };
    // Two keys and two values, so that reads often match some write and the verdict is in doubt.
    const smallKvInputArb = kvInputArb.map((input): KvInput => {
      const key = input.key === 'c' ? 'a' : input.key;
      const narrowed = (value: string): string => (value === 'v0' || value === 'v2' ? 'v0' : 'v1');
      if (input.op === 'put') return { ...input, key, value: narrowed(input.value) };
      if (input.op === 'cas') return { ...input, key, expected: input.expected === null ? null : narrowed(input.expected), value: narrowed(input.value) };
      return { ...input, key };
    });
    fc.assert(
      fc.property(randomHistoryArb(smallKvInputArb, kvOutputs), (history) => {
        const expected = bruteForceLinearizable(kvMapModel, history) ? 'ok' : 'illegal';
        tally[expected]++;
        expect(verdict(checkOperations(kvModel, history))).toBe(expected);
        expect(verdict(checkOperations(kvMapModel, history))).toBe(expected);
        expect(verdict(checkOperations(kvMapModelWithoutHash, history))).toBe(expected);
      }),
      options,
    );
    console.log(`[kv oracle] verdicts: ${JSON.stringify(tally)}`);
    if (options.numRuns! >= 100) expect(Math.min(tally.ok, tally.illegal)).toBeGreaterThan(options.numRuns! / 20);
  });

  it('agrees with a brute-force search on tiny file-namespace histories, partitioned or not', () => {
    const options = propertyOptions('linearizability fs oracle', 1000);
    const tally = { ok: 0, illegal: 0 };
    const fsOutputs = (input: FsInput): readonly FsOutput[] => {
      if (input.op === 'stat') return [null, 'c0', 'c1'];
      if (input.op === 'put') return ['ok'];
      return input.op === 'create' ? ['ok', 'exists'] : ['ok', 'not_found'];
    };
    const smallFsInputArb = fsInputArb.filter((input) => input.op === 'mv' || input.path !== 'd');
    fc.assert(
      fc.property(randomHistoryArb(smallFsInputArb, fsOutputs), (history) => {
        const expected = bruteForceLinearizable(fsModelUnpartitioned, history) ? 'ok' : 'illegal';
        tally[expected]++;
        expect(verdict(checkOperations(fsModel, history))).toBe(expected);
        expect(verdict(checkOperations(fsModelUnpartitioned, history))).toBe(expected);
        expect(verdict(checkOperations(fsModelWithoutHash, history))).toBe(expected);
      }),
      options,
    );
    console.log(`[fs oracle] verdicts: ${JSON.stringify(tally)}`);
    if (options.numRuns! >= 100) expect(Math.min(tally.ok, tally.illegal)).toBeGreaterThan(options.numRuns! / 20);
  });
});
