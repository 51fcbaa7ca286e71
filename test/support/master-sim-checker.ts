import { isDeepStrictEqual } from 'node:util';

/**
 * The properties the master simulator checks, over the real RaftDriver, MetaMachine and
 * LeaderTaskHost. The simulator reports what it sees (after every event, and from taps on the
 * state machine, the transport and the store); a broken property is recorded as the first
 * violation — never thrown from inside the code under test, which would turn a finding into a
 * driver failure — and the simulator stops at the end of that event.
 */

/** A property does not hold: the simulator found a bug. */
export class MasterSimViolation extends Error {
  readonly property: string;
  constructor(property: string, detail: string) {
    super(`${property}: ${detail}`);
    this.name = 'MasterSimViolation';
    this.property = property;
  }
}

/** 52-bit FNV-1a-style digest of bytes (two 32-bit lanes), as hex: cheap and deterministic. */
export function bytesDigest(data: Uint8Array): string {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ data.length;
  for (let i = 0; i < data.length; i++) {
    a = Math.imul(a ^ data[i]!, 0x01000193) >>> 0;
    b = Math.imul(b ^ data[i]!, 0x5bd1e995) >>> 0;
  }
  return `${a.toString(16).padStart(8, '0')}${(b >>> 12).toString(16).padStart(5, '0')}:${data.length}`;
}

/** The state after applying `digest` at `index` on top of the state `previous`. */
export function chainDigest(previous: string, index: number, digest: string): string {
  return bytesDigest(new TextEncoder().encode(`${previous}|${index}|${digest}`));
}

/** What one master looks like after an event (from RaftDriver's status and role getters). */
export interface MasterObservation {
  readonly id: string;
  /** The driver's public role (follower once failed or stopped). */
  readonly role: string;
  /** The role in driver.status() (the core's, unless halted). */
  readonly statusRole: string;
  readonly leaderId: string | null;
  readonly term: number;
  readonly commit: number;
  readonly applied: number;
  /** The driver stopped on a persistence failure. */
  readonly failed: boolean;
  /** A write of this process failed (armed fault) before or during this event. */
  readonly writeFailed: boolean;
}

/** One action of the leader-only task, right after its ctx.confirm() resolved. */
export interface DestructiveStep {
  readonly master: string;
  /** The term of the leadership the task runs under (ctx.term). */
  readonly term: number;
  /** The driver's term when the step ran. */
  readonly currentTerm: number;
  readonly role: string;
  readonly failed: boolean;
  /** The driver's applied index when the step ran. */
  readonly applied: number;
  /** The highest commit index any master had when confirm() was called. */
  readonly requiredCommit: number;
  readonly confirmStartedAt: number;
  readonly at: number;
}

interface ApplyCursor {
  /** The last data entry this master's machine applied (MetaState's appliedIndex). */
  index: number;
  /** The digest of the state at `index`: the chain of entries applied up to it. */
  chain: string;
}

export interface CheckerCounters {
  applies: number;
  fullHashes: number;
  restores: number;
  snapshotsTaken: number;
  destructiveSteps: number;
  clientResultsChecked: number;
  appliesAfterFailure: number;
  staleTermSteps: number;
}

export interface CheckerOptions {
  /** Count destructive steps taken after the master knew of a higher term instead of failing. */
  readonly tolerateStaleTermSteps?: boolean;
}

export class MasterSimChecker {
  /** The first violation found; the simulator stops when it is set. */
  violation: MasterSimViolation | null = null;
  /** Election Safety: the leader of each term. */
  readonly leaderOfTerm = new Map<number, string>();
  /** The highest commit index any master has had. */
  maxCommit = 0;
  /** The highest term any master has had. */
  maxTerm = 0;
  /** State Machine Safety, per applied data entry: its digest, the state digest after it, the result. */
  readonly entryAt = new Map<number, string>();
  readonly chainAt = new Map<number, string>();
  readonly resultAt = new Map<number, string>();
  /** BLAKE3 state hashes (MetaState.stateHash) at the indexes where some master computed one. */
  readonly fullHashAt = new Map<number, string>();
  /** Exactly-once: the first result of each (clientId, seq) in the log, and where it applied. */
  readonly firstResult = new Map<string, { index: number; result: unknown }>();
  readonly #cursor = new Map<string, ApplyCursor>();
  readonly counters: CheckerCounters = { applies: 0, fullHashes: 0, restores: 0, snapshotsTaken: 0, destructiveSteps: 0, clientResultsChecked: 0, appliesAfterFailure: 0, staleTermSteps: 0 };
  readonly #options: CheckerOptions;

  constructor(options: CheckerOptions = {}) {
    this.#options = options;
  }

  fail(property: string, detail: string): void {
    this.violation ??= new MasterSimViolation(property, detail);
  }

  // ---- roles, terms, commits (after every event) ----

  observe(o: MasterObservation): void {
    if (o.term > this.maxTerm) this.maxTerm = o.term;
    if (o.commit > this.maxCommit) this.maxCommit = o.commit;
    if (o.failed) {
      if (o.role === 'leader' || o.statusRole === 'leader' || o.leaderId !== null) {
        this.fail('Stop on failure', `${o.id} failed to persist but reports role ${o.role}/${o.statusRole}, leader ${o.leaderId}`);
      }
      return;
    }
    if (o.writeFailed) this.fail('Stop on failure', `${o.id}: a write failed but the driver runs on (role ${o.role}, term ${o.term})`);
    if (o.statusRole === 'leader') this.noteLeader(o.id, o.term);
  }

  /** `id` leads `term` (seen leading, or confirmed by a quorum). */
  noteLeader(id: string, term: number): void {
    const known = this.leaderOfTerm.get(term);
    if (known === undefined) this.leaderOfTerm.set(term, id);
    else if (known !== id) this.fail('Election Safety', `term ${term} has two leaders, ${known} and ${id}`);
  }

  // ---- the state machine (taps on MetaMachine) ----

  /** A new process of `id` starts with an empty machine. */
  started(id: string): void {
    this.#cursor.set(id, { index: 0, chain: 'empty' });
  }

  /**
   * `id` applied the data entry at `index` (`digest` of its bytes) with `result`; `fullHash` is
   * the machine's state hash after it when the simulator computed one.
   */
  applied(id: string, index: number, digest: string, result: unknown, fullHash?: string): void {
    this.counters.applies++;
    const cursor = this.#cursor.get(id) ?? { index: 0, chain: 'empty' };
    if (index <= cursor.index) this.fail('Apply order', `${id} applied ${index} after ${cursor.index}`);
    const known = this.entryAt.get(index);
    if (known === undefined) this.entryAt.set(index, digest);
    else if (known !== digest) this.fail('State Machine Safety', `${id} applied entry ${digest} at ${index}, another master applied ${known}`);
    const chain = chainDigest(cursor.chain, index, digest);
    const knownChain = this.chainAt.get(index);
    if (knownChain === undefined) this.chainAt.set(index, chain);
    else if (knownChain !== chain) {
      this.fail('State Machine Safety', `${id} reached a different state at ${index} (it applied a different sequence of entries before it, from ${cursor.index})`);
    }
    const resultJson = JSON.stringify(result);
    const knownResult = this.resultAt.get(index);
    if (knownResult === undefined) this.resultAt.set(index, resultJson);
    else if (knownResult !== resultJson) this.fail('Deterministic apply', `${id} got ${resultJson} at ${index}, another master got ${knownResult}`);
    if (fullHash !== undefined) this.#fullHash(id, index, fullHash, 'after applying');
    this.#cursor.set(id, { index, chain });
  }

  /** The apply was a client command: exactly once per (clientId, seq). */
  appliedCommand(id: string, index: number, clientId: string, seq: number, result: unknown): void {
    const key = `${clientId}#${seq}`;
    const first = this.firstResult.get(key);
    if (first === undefined) this.firstResult.set(key, { index, result });
    else if (first.index !== index && !isDeepStrictEqual(first.result, result)) {
      this.fail('Exactly once', `${id}: request ${key} applied again at ${index} with ${JSON.stringify(result)}; it first applied at ${first.index} with ${JSON.stringify(first.result)}`);
    }
  }

  /** `id` restored a snapshot whose state is at data index `index`. */
  restored(id: string, index: number, fullHash: string): void {
    if (index === 0) {
      this.#cursor.set(id, { index: 0, chain: 'empty' });
      return;
    }
    const chain = this.chainAt.get(index);
    if (chain === undefined) {
      this.fail('State Machine Safety', `${id} restored a snapshot at ${index}, a state no master reached by applying`);
      return;
    }
    this.counters.restores++;
    this.#fullHash(id, index, fullHash, 'restored');
    this.#cursor.set(id, { index, chain });
  }

  /**
   * `id` serialised its state for a snapshot. The state is captured when snapshot() is called:
   * the data must say the index the machine had then (`indexAtCall`, which must be the last entry
   * this master applied, `cursorAtCall`) and hash to the state hash taken then, whatever was
   * applied while it was serialised.
   */
  snapshotTaken(id: string, headerIndex: number, indexAtCall: number, cursorAtCall: number, hashAtCall: string, dataHash: string): void {
    this.counters.snapshotsTaken++;
    if (indexAtCall !== cursorAtCall) this.fail('Snapshot', `${id} was asked for a snapshot at state ${indexAtCall}, but its machine applied up to ${cursorAtCall}`);
    if (headerIndex !== indexAtCall) this.fail('Snapshot', `${id}: the snapshot data says ${headerIndex}, the state was at ${indexAtCall} when it was taken`);
    if (dataHash !== hashAtCall) this.fail('Snapshot', `${id}: the snapshot data (at ${headerIndex}) is not the state captured when snapshot() was called`);
    if (headerIndex > 0) this.#fullHash(id, headerIndex, hashAtCall, 'snapshotted');
  }

  /**
   * A snapshot reached the store (compaction, or one from the leader): its data (state at
   * `dataIndex`) must hold every data entry up to its metadata index.
   */
  snapshotPersisted(id: string, metaIndex: number, dataIndex: number): void {
    if (dataIndex > metaIndex) this.fail('Snapshot', `${id} persisted a snapshot at ${metaIndex} whose data is at ${dataIndex}`);
    for (const index of this.entryAt.keys()) {
      if (index > dataIndex && index <= metaIndex) {
        this.fail('Snapshot', `${id} persisted a snapshot at ${metaIndex} whose data (at ${dataIndex}) lacks the entry applied at ${index}`);
        return;
      }
    }
  }

  /** The machine's applied data index (to pick sampling points and report). */
  appliedOf(id: string): number {
    return this.#cursor.get(id)?.index ?? 0;
  }

  #fullHash(id: string, index: number, hash: string, how: string): void {
    this.counters.fullHashes++;
    const known = this.fullHashAt.get(index);
    if (known === undefined) this.fullHashAt.set(index, hash);
    else if (known !== hash) this.fail('State Machine Safety', `${id} ${how} a state at ${index} with hash ${hash.slice(0, 16)}, another master had ${known.slice(0, 16)}`);
  }

  // ---- the failure contract ----

  /** A message promised something (an acknowledged entry, a vote) that was not durable yet. */
  sentBeforePersist(id: string, what: string): void {
    this.fail('Persist before send', `${id} sent ${what}`);
  }

  /** A process whose driver failed sent a message. */
  sentAfterFailure(id: string, what: string): void {
    this.fail('Stop on failure', `${id} sent ${what} after its persistence failed`);
  }

  /**
   * A stopped driver applied a (committed) entry: not an answer — its proposals and reads were
   * all refused when it stopped — so only counted; answers are checked where clients get them.
   */
  appliedAfterFailure(_id: string, _index: number): void {
    this.counters.appliesAfterFailure++;
  }

  answeredAfterFailure(id: string, what: string): void {
    this.fail('Stop on failure', `${id} answered ${what} after its persistence failed`);
  }

  unexpectedFailure(id: string, err: Error): void {
    this.fail('Unexpected failure', `${id} stopped with "${err.message}" though no persistence fault was injected`);
  }

  // ---- leader-only tasks ----

  destructiveStep(s: DestructiveStep): void {
    this.counters.destructiveSteps++;
    const what = `destructive step on ${s.master} (term ${s.term}) at ${s.at} ms`;
    if (s.failed) this.fail('Leader task safety', `${what}: its persistence had failed`);
    if (s.currentTerm !== s.term) {
      if (this.#options.tolerateStaleTermSteps) this.counters.staleTermSteps++;
      else this.fail('Leader task safety', `${what}: the master already knew of term ${s.currentTerm} (its role still read ${s.role})`);
    }
    if (s.role !== 'leader') this.fail('Leader task safety', `${what}: the master is ${s.role}`);
    if (s.applied < s.requiredCommit) {
      this.fail('Leader task safety', `${what}: applied only up to ${s.applied}, but ${s.requiredCommit} was committed when confirm() began at ${s.confirmStartedAt} ms (a stale state)`);
    }
    this.noteLeader(s.master, s.term);
  }

  // ---- clients ----

  /** A client got `result` for (clientId, seq): it must be what the log's first application gave. */
  clientResult(clientId: string, seq: number, result: unknown): void {
    this.counters.clientResultsChecked++;
    const key = `${clientId}#${seq}`;
    const first = this.firstResult.get(key);
    if (first === undefined) this.fail('Acknowledged writes', `client ${clientId} got ${JSON.stringify(result)} for request ${seq}, which no master applied`);
    else if (!isDeepStrictEqual(first.result, result)) {
      this.fail('Exactly once', `client ${clientId} got ${JSON.stringify(result)} for request ${seq}; it applied at ${first.index} with ${JSON.stringify(first.result)}`);
    }
  }

  /** After healing: every master must hold the same state and have applied the same index. */
  converged(states: ReadonlyArray<{ id: string; applied: number; hash: string }>): void {
    const [first, ...rest] = states;
    if (!first) return;
    for (const s of rest) {
      if (s.applied !== first.applied || s.hash !== first.hash) {
        this.fail('Convergence', `${s.id} applied ${s.applied} with state ${s.hash.slice(0, 16)}, ${first.id} applied ${first.applied} with ${first.hash.slice(0, 16)}`);
      }
    }
  }
}
