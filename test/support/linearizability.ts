/**
 * A linearizability checker for histories recorded against dfs, after Porcupine
 * (github.com/anishathalye/porcupine): the Wing & Gong search with Lowe's improvements, plus
 * P-compositionality.
 *
 * - The history becomes a doubly linked list of call and return events in time order. The search
 *   walks it from the front: at a call it tries to linearize that operation next (step the model);
 *   at a return it has hit an operation that had to be linearized already, so it backtracks.
 *   Linearizing an operation "lifts" its call and return out of the list (dancing links), so the
 *   walk always restarts from the front of what is left and undoing is O(1).
 * - A cache of (set of linearized operations, model state) pairs that have been reached before
 *   prunes every revisit: whatever follows depends only on that pair (Lowe).
 * - The model may split a history into independent partitions (for example one per key); a history
 *   is linearizable iff each partition is (Herlihy & Wing's locality), and small searches are much
 *   cheaper than one big one.
 *
 * Indeterminate operations (a timeout or a crash: the client never learned the outcome) have
 * `return = Infinity` and `output = undefined`. Such an operation may have taken effect at any point
 * after its call, or never. "Any point after its call" falls out of the infinite return time; "never"
 * is why a search succeeds once every *determinate* operation is linearized, whatever indeterminate
 * ones are left over. (Porcupine instead linearizes leftovers at the very end, which needs the model
 * to accept them in every state; dropping them is the definition itself and no model can get it
 * wrong.) An indeterminate operation that would change nothing where it stands is not tried
 * there at all: omitting it is always at least as good.
 *
 * Checking linearizability is NP-complete, so every check runs under a budget (steps and/or wall
 * time) and reports `unknown` when the budget runs out rather than hang.
 */
import { SeededBytes } from './prng.ts';

/**
 * One completed (or abandoned) operation of a history. `call` and `return` come from a monotonic
 * clock and form a closed interval: operations whose intervals touch are concurrent.
 */
export interface Operation<I, O> {
  readonly clientId: number | string;
  readonly input: I;
  readonly call: number;
  /** undefined exactly when the operation is indeterminate (then `return` is Infinity). */
  readonly output: O | undefined;
  /** Infinity for an indeterminate operation: it may take effect at any time after its call, or never. */
  readonly return: number;
}

/** A sequential specification. Must be pure: `step` never mutates the state it is given. */
export interface Model<S, I, O> {
  init(): S;
  /**
   * Whether `input` may produce `output` in `state`, and the state after it. `output` undefined
   * means the operation is indeterminate: accept it (ok: true) and apply its effect, as this call
   * means "it took effect here"; the checker itself covers "it never took effect".
   */
  step(state: S, input: I, output: O | undefined): { ok: boolean; state: S };
  /** Splits a history into independently checkable parts; every operation must be in exactly one. */
  partition?(history: readonly Operation<I, O>[]): Operation<I, O>[][];
  equal(a: S, b: S): boolean;
  /** A key for the cache; equal states must have equal hashes. Without it states are compared one by one. */
  hash?(state: S): string;
  describeOperation?(input: I, output: O | undefined): string;
  describeState?(state: S): string;
}

export interface CheckOptions {
  /**
   * Search steps (model steps plus backtracks) over all partitions. Default 5,000,000; Infinity for
   * none. Memory grows with steps: each new cache entry holds a copy of the linearized bitset
   * (about n/8 bytes for an n-operation partition) plus the state; 5M steps on a 2,000-operation
   * history peaked near 650 MB RSS.
   */
  maxSteps?: number;
  /** Wall-clock budget in milliseconds, counted from the start of the check. Default: none. */
  timeoutMs?: number;
}

export type CheckResult<I, O> =
  | {
      result: 'ok';
      /** A witness per partition, in the model's partition order; omitted indeterminate operations are absent. */
      linearizations: Operation<I, O>[][];
      steps: number;
    }
  | {
      result: 'illegal';
      /** Index (in the model's partition order) of the partition that has no linearization. */
      partitionIndex: number;
      /** The longest linearizable prefix the search found in that partition. */
      partialLinearization: Operation<I, O>[];
      /** Human-readable: where the search got stuck and which operations could not come next. */
      hint: string;
      steps: number;
    }
  | { result: 'unknown'; reason: string; steps: number };

export const DEFAULT_MAX_STEPS = 5_000_000;

/** Reading the clock costs more than a search step, so the deadline is checked every this many steps. */
const CLOCK_CHECK_INTERVAL = 256;

export function isIndeterminate(op: Operation<unknown, unknown>): boolean {
  return op.return === Infinity;
}

export function checkOperations<S, I, O>(
  model: Model<S, I, O>,
  history: readonly Operation<I, O>[],
  options: CheckOptions = {},
): CheckResult<I, O> {
  history.forEach(validateOperation);
  const budget = new SearchBudget(options.maxSteps ?? DEFAULT_MAX_STEPS, options.timeoutMs);
  const partitions = model.partition ? model.partition(history) : [history.slice()];
  const partitionedCount = partitions.reduce((sum, p) => sum + p.length, 0);
  if (partitionedCount !== history.length) {
    throw new Error(`model.partition returned ${partitionedCount} operations for a history of ${history.length}`);
  }

  // Smallest partitions first: when the budget runs out in a big one, a violation in a small one
  // has been found already (Porcupine gets the same by checking partitions in parallel).
  const order = partitions.map((_, index) => index).sort((a, b) => partitions[a]!.length - partitions[b]!.length);
  const linearizations: Operation<I, O>[][] = partitions.map(() => []);
  let checked = 0;
  for (const index of order) {
    const ops = partitions[index]!;
    const outcome = searchPartition(model, ops, budget);
    if (outcome.kind === 'out-of-budget') {
      return {
        result: 'unknown',
        reason:
          `${budget.exhaustionReason()} while checking partition ${index} (${ops.length} operations); ` +
          `${checked} of ${partitions.length} partitions were checked and are linearizable`,
        steps: budget.steps,
      };
    }
    if (outcome.kind === 'illegal') {
      return {
        result: 'illegal',
        partitionIndex: index,
        partialLinearization: outcome.longestPrefix.map((i) => ops[i]!),
        hint: explainDeadEnd(model, ops, outcome.longestPrefix, index),
        steps: budget.steps,
      };
    }
    linearizations[index] = outcome.linearization.map((i) => ops[i]!);
    checked++;
  }
  return { result: 'ok', linearizations, steps: budget.steps };
}

function validateOperation(op: Operation<unknown, unknown>, index: number): void {
  if (!Number.isFinite(op.call)) throw new RangeError(`operation ${index}: call time ${op.call} is not finite`);
  // `!(a >= b)` also rejects NaN.
  if (!(op.return >= op.call)) throw new RangeError(`operation ${index}: return time ${op.return} is before its call ${op.call}`);
  if (op.output === undefined && op.return !== Infinity) {
    // An unknown outcome with a finite return would force the operation to take effect before that
    // return, which is exactly what a timeout does not tell us.
    throw new RangeError(`operation ${index}: output is undefined but return is ${op.return}; an indeterminate operation must have return = Infinity`);
  }
}

class SearchBudget {
  readonly #maxSteps: number;
  readonly #timeoutMs: number | undefined;
  readonly #deadline: number;
  #exhaustedBy: 'steps' | 'time' | undefined;
  steps = 0;

  constructor(maxSteps: number, timeoutMs: number | undefined) {
    if (!(maxSteps >= 0)) throw new RangeError(`maxSteps must be a non-negative number, got ${maxSteps}`);
    if (timeoutMs !== undefined && !(timeoutMs >= 0)) throw new RangeError(`timeoutMs must be a non-negative number, got ${timeoutMs}`);
    this.#maxSteps = maxSteps;
    this.#timeoutMs = timeoutMs;
    this.#deadline = timeoutMs === undefined ? Infinity : performance.now() + timeoutMs;
  }

  /** Takes one step; false once the budget is spent. */
  spend(): boolean {
    if (this.steps >= this.#maxSteps) {
      this.#exhaustedBy = 'steps';
      return false;
    }
    if (this.steps % CLOCK_CHECK_INTERVAL === 0 && performance.now() > this.#deadline) {
      this.#exhaustedBy = 'time';
      return false;
    }
    this.steps++;
    return true;
  }

  exhaustionReason(): string {
    return this.#exhaustedBy === 'time'
      ? `timeout of ${this.#timeoutMs} ms passed after ${this.steps} steps`
      : `step budget of ${this.#maxSteps} exhausted`;
  }
}

// ---------------------------------------------------------------------------------------------
// The event list

interface EventNode {
  readonly kind: 'head' | 'call' | 'return';
  /** Index into the partition's operations; -1 for the head sentinel. */
  readonly opIndex: number;
  /** For a call: its return event. */
  returnEvent: EventNode | null;
  prev: EventNode | null;
  next: EventNode | null;
}

/** Builds the time-ordered event list behind a head sentinel (which is returned). */
function buildEventList(ops: readonly Operation<unknown, unknown>[]): EventNode {
  const events: Array<{ time: number; kind: 'call' | 'return'; opIndex: number }> = [];
  ops.forEach((op, opIndex) => {
    events.push({ time: op.call, kind: 'call', opIndex }, { time: op.return, kind: 'return', opIndex });
  });
  // Calls before returns at equal times: intervals are closed, so touching operations are
  // concurrent. Compare rather than subtract: Infinity - Infinity is NaN.
  events.sort((a, b) => {
    if (a.time !== b.time) return a.time < b.time ? -1 : 1;
    if (a.kind !== b.kind) return a.kind === 'call' ? -1 : 1;
    return a.opIndex - b.opIndex;
  });

  const head: EventNode = { kind: 'head', opIndex: -1, returnEvent: null, prev: null, next: null };
  const callOf = new Map<number, EventNode>();
  let tail = head;
  for (const event of events) {
    const node: EventNode = { kind: event.kind, opIndex: event.opIndex, returnEvent: null, prev: tail, next: null };
    tail.next = node;
    tail = node;
    if (event.kind === 'call') callOf.set(event.opIndex, node);
    else callOf.get(event.opIndex)!.returnEvent = node;
  }
  return head;
}

function unlink(node: EventNode): void {
  node.prev!.next = node.next;
  if (node.next !== null) node.next.prev = node.prev;
}

/** Undoes `unlink`: the node still points at its old neighbours, which LIFO order has restored. */
function relink(node: EventNode): void {
  node.prev!.next = node;
  if (node.next !== null) node.next.prev = node;
}

function lift(call: EventNode): void {
  unlink(call);
  unlink(call.returnEvent!);
}

function unlift(call: EventNode): void {
  relink(call.returnEvent!);
  relink(call);
}

// ---------------------------------------------------------------------------------------------
// The search

type PartitionOutcome =
  | { kind: 'ok'; linearization: number[] }
  | { kind: 'illegal'; longestPrefix: number[] }
  | { kind: 'out-of-budget' };

interface Frame<S> {
  readonly call: EventNode;
  readonly stateBefore: S;
}

function searchPartition<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[], budget: SearchBudget): PartitionOutcome {
  const indeterminate = ops.map(isIndeterminate);
  const head = buildEventList(ops);
  const linearized = new LinearizedSet(ops.length);
  const reached = new ReachedCache(model);
  const stack: Frame<S>[] = [];
  let longestPrefix: number[] = [];
  let determinateLeft = indeterminate.filter((x) => !x).length;
  let state = model.init();
  let event = head.next;

  while (determinateLeft > 0) {
    if (!budget.spend()) return { kind: 'out-of-budget' };
    // A determinate operation is left, so its return is still listed and the walk meets a return
    // before running off the end.
    if (event === null) throw new Error('linearizability search walked off the event list');
    const opIndex = event.opIndex;
    if (event.kind === 'call') {
      const op = ops[opIndex]!;
      const { ok, state: nextState } = model.step(state, op.input, indeterminate[opIndex] ? undefined : op.output);
      // An indeterminate operation that would change nothing here (a read, a failed guard) is
      // never worth linearizing: dropping it from any linearization leaves a valid one, and it
      // constrains nobody (it has no return). Skipping it saves exploring it at every position.
      const pointless = ok && indeterminate[opIndex] === true && model.equal(nextState, state);
      if (ok && !pointless) {
        linearized.toggle(opIndex);
        if (reached.addIfNew(linearized, nextState)) {
          stack.push({ call: event, stateBefore: state });
          state = nextState;
          if (!indeterminate[opIndex]) determinateLeft--;
          lift(event);
          event = head.next;
          continue;
        }
        linearized.toggle(opIndex);
      }
      event = event.next;
    } else {
      // A return: this operation had to be linearized by now and is not, so the choices on the
      // stack lead nowhere. Undo the most recent one and try the operation after it instead.
      if (stack.length > longestPrefix.length) longestPrefix = stack.map((frame) => frame.call.opIndex);
      const frame = stack.pop();
      if (frame === undefined) return { kind: 'illegal', longestPrefix };
      const undone = frame.call.opIndex;
      state = frame.stateBefore;
      linearized.toggle(undone);
      if (!indeterminate[undone]) determinateLeft++;
      unlift(frame.call);
      event = frame.call.next;
    }
  }
  return { kind: 'ok', linearization: stack.map((frame) => frame.call.opIndex) };
}

/**
 * The set of linearized operations: a bitset, with a Zobrist hash (XOR of a fixed random 64 bits
 * per member) kept up to date on every flip, so the cache is keyed in O(1) rather than O(n).
 */
class LinearizedSet {
  readonly #bits: Uint32Array;
  readonly #randomLow: Uint32Array;
  readonly #randomHigh: Uint32Array;
  #hashLow = 0;
  #hashHigh = 0;

  constructor(size: number) {
    this.#bits = new Uint32Array(Math.ceil(size / 32));
    // Fixed seed: a check must behave the same on every run.
    const random = new SeededBytes(0x5eed);
    this.#randomLow = Uint32Array.from({ length: size }, () => random.nextU32());
    this.#randomHigh = Uint32Array.from({ length: size }, () => random.nextU32());
  }

  /** Adds the operation if absent, removes it if present. */
  toggle(index: number): void {
    this.#bits[index >>> 5]! ^= 1 << (index & 31);
    this.#hashLow ^= this.#randomLow[index]!;
    this.#hashHigh ^= this.#randomHigh[index]!;
  }

  hashKey(): string {
    return `${this.#hashLow.toString(36)}.${this.#hashHigh.toString(36)}`;
  }

  snapshot(): Uint32Array {
    return this.#bits.slice();
  }

  /** Exact comparison: the hash only narrows the search, a collision must not prune anything. */
  equals(snapshot: Uint32Array): boolean {
    for (let i = 0; i < snapshot.length; i++) if (snapshot[i] !== this.#bits[i]) return false;
    return true;
  }
}

/** The (linearized set, state) pairs the search has reached; see Lowe's cache in the header. */
class ReachedCache<S, I, O> {
  readonly #model: Model<S, I, O>;
  readonly #entriesByKey = new Map<string, Array<{ linearized: Uint32Array; state: S }>>();

  constructor(model: Model<S, I, O>) {
    this.#model = model;
  }

  /** Records the pair and returns true, or returns false if it was reached before. */
  addIfNew(linearized: LinearizedSet, state: S): boolean {
    const setKey = linearized.hashKey();
    const key = this.#model.hash ? `${setKey}|${this.#model.hash(state)}` : setKey;
    const bucket = this.#entriesByKey.get(key);
    if (bucket?.some((entry) => linearized.equals(entry.linearized) && this.#model.equal(entry.state, state))) return false;
    const entry = { linearized: linearized.snapshot(), state };
    if (bucket) bucket.push(entry);
    else this.#entriesByKey.set(key, [entry]);
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// Explaining a violation

const MAX_PREFIX_OPS_SHOWN = 8;

/**
 * Replays the longest prefix and says which operations could come next and why each fails: the
 * model rejects it outright, or every continuation after it dead-ends too.
 */
function explainDeadEnd<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[], prefix: readonly number[], partitionIndex: number): string {
  const describe = (op: Operation<I, O>): string => describeOperation(model, op);
  let state = model.init();
  for (const i of prefix) {
    const op = ops[i]!;
    state = model.step(state, op.input, isIndeterminate(op) ? undefined : op.output).state;
  }
  const placed = new Set(prefix);
  const remaining = ops.filter((_, i) => !placed.has(i));
  let deadline: Operation<I, O> | undefined;
  for (const op of remaining) if (!isIndeterminate(op) && (deadline === undefined || op.return < deadline.return)) deadline = op;
  const deadlineTime = deadline?.return ?? Infinity;
  const candidates = remaining.filter((op) => op.call <= deadlineTime);

  const shown = prefix.slice(-MAX_PREFIX_OPS_SHOWN).map((i) => describe(ops[i]!));
  const prefixText =
    prefix.length === 0
      ? 'no operation can be linearized first'
      : `the longest linearizable prefix has ${prefix.length} operation(s)${prefix.length > shown.length ? ', ending' : ''}: ${shown.join('; ')}`;
  const stateText = model.describeState ? ` (state then: ${model.describeState(state)})` : '';
  const deadlineText = deadline ? `${describe(deadline)} must take effect by its return at ${deadline.return}, but ` : '';
  const candidateText = candidates
    .map((op) => {
      const accepted = model.step(state, op.input, isIndeterminate(op) ? undefined : op.output).ok;
      return `${describe(op)} (${accepted ? 'accepted, but no linearization continues from it' : 'rejected by the model'})`;
    })
    .join('; ');
  return (
    `partition ${partitionIndex} (${ops.length} operations) is not linearizable: ${prefixText}${stateText}. ` +
    `After that, ${deadlineText}none of the operations that may come next works: ${candidateText}`
  );
}

export function describeOperation<S, I, O>(model: Model<S, I, O>, op: Operation<I, O>): string {
  const what = model.describeOperation
    ? model.describeOperation(op.input, op.output)
    : `${JSON.stringify(op.input)} -> ${op.output === undefined ? '?' : JSON.stringify(op.output)}`;
  const until = isIndeterminate(op) ? 'never returned' : `${op.return}`;
  return `${what} [client ${op.clientId}, ${op.call}..${until}]`;
}
