import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Mutation testing of the Raft simulator: classic Raft bugs, each planted by one exact-text
 * replacement in a copy of the core (or of the simulator, for bugs in how a node drives its
 * Ready loop). The simulator must catch every one. A replacement whose text is no longer in
 * the source fails loudly, so the mutants cannot rot into silently testing nothing.
 */
export interface Mutant {
  readonly name: string;
  /** Path of the file to change, relative to the repository root. */
  readonly file: string;
  /** Exact text that must occur exactly once in `file`. */
  readonly find: string;
  readonly replace: string;
}

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * What a planted copy holds: the core (and the one module outside it that it imports), the
 * simulator, and the driver. The copy keeps the repository layout, so relative imports work
 * unchanged; node_modules is linked.
 */
export const COPIED_PATHS: readonly string[] = [
  'src/raft',
  'src/errors',
  'test/support/raft-sim.ts',
  'test/support/raft-sim-checker.ts',
  'test/support/raft-sim-network.ts',
  'test/support/raft-sim-schedules.ts',
  'test/mutants/driver.ts',
];

export const DRIVER_PATH = 'test/mutants/driver.ts';

const NODE = 'src/raft/node.ts';
const LOG = 'src/raft/log.ts';
const SIM = 'test/support/raft-sim.ts';

export const MUTANTS: readonly Mutant[] = [
  {
    name: 'vote granted without the up-to-date check',
    file: NODE,
    find: 'if (canVote && this.log.isUpToDate(m.lastLogIndex, m.lastLogTerm)) {',
    replace: 'if (canVote) {',
  },
  {
    name: 'vote not recorded',
    file: NODE,
    find: `        this.electionElapsed = 0;
        this.vote = m.from;
`,
    replace: `        this.electionElapsed = 0;
`,
  },
  {
    // The vote is persisted, but by the Ready after the one that carries the voteResp.
    name: 'vote not persisted before the reply',
    file: NODE,
    find: `    const hardState = this.hardState();
    const changedHardState =`,
    replace: `    const fresh = this.hardState();
    const granting = this.outbox.some((m) => m.type === 'voteResp' && !m.reject);
    const keptVote = this.persistedHardState?.term === fresh.term ? this.persistedHardState.vote : null;
    const hardState = granting ? { ...fresh, vote: keptVote } : fresh;
    const changedHardState =`,
  },
  {
    name: 'up-to-date judged by index only',
    file: LOG,
    find: 'return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());',
    replace: 'return lastIndex >= this.lastIndex();',
  },
  {
    name: 'read served without a commit in the current term',
    file: NODE,
    find: `    if (this.log.term(this.log.committed) !== this.term) return { ok: false, reason: 'no_commit_in_term' };
`,
    replace: '',
  },
  {
    name: 'read served without a quorum',
    file: NODE,
    find: 'if (this.isQuorum(new Set([this.id]))) {',
    replace: 'if (true) {',
  },
  {
    name: 'no no-op entry from a new leader',
    file: NODE,
    find: `    const entry = this.appendEntry('normal', EMPTY_DATA);
    leader.pendingConfIndex = entry.index;
`,
    replace: '',
  },
  {
    name: 'message sent before its state is persisted',
    file: SIM,
    find: `      this.write(server, isLeader, rd);
      if (crashAt === 'duringPersist') return this.crash(server);
      this.sync(server);
      if (crashAt === 'afterPersist') return this.crash(server);
      for (const message of rd.messages) this.send(message);
`,
    replace: `      this.write(server, isLeader, rd);
      for (const message of rd.messages) this.send(message);
      if (crashAt === 'duringPersist') return this.crash(server);
      this.sync(server);
      if (crashAt === 'afterPersist') return this.crash(server);
`,
  },
  {
    name: 'older-term entry committed by counting (figure 8)',
    file: NODE,
    find: 'if (index <= this.log.committed || this.log.term(index) !== this.term) return advanced;',
    replace: 'if (index <= this.log.committed) return advanced;',
  },
  {
    name: 'follower commits past its matched index',
    file: LOG,
    find: 'this.commitTo(Math.min(committed, lastNew));',
    replace: 'this.commitTo(Math.min(committed, this.lastIndex()));',
  },
];

/** Thrown when a mutant cannot be planted: its text to replace is gone or ambiguous. */
export class MutantRotError extends Error {
  override name = 'MutantRotError';
}

/** Applies the mutant's replacement to `source`; fails unless the text occurs exactly once. */
export function mutate(mutant: Mutant, source: string): string {
  const occurrences = source.split(mutant.find).length - 1;
  if (occurrences !== 1) {
    throw new MutantRotError(`mutant "${mutant.name}": the text to replace occurs ${occurrences} times in ${mutant.file}, expected once:\n${mutant.find}`);
  }
  return source.replace(mutant.find, () => mutant.replace);
}

/**
 * Copies the core and the simulator into `dir` (which must exist and be empty) and plants
 * `mutant` there; null plants nothing (the control). Returns the driver's path in the copy.
 */
export function plant(mutant: Mutant | null, dir: string, root = REPO_ROOT): string {
  for (const path of COPIED_PATHS) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    cpSync(join(root, path), join(dir, path), { recursive: true });
  }
  // Node runs the .ts files directly, as ES modules; fast-check (and vitest, which the schedule
  // module imports) resolve through the linked node_modules.
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  if (mutant !== null) {
    const target = join(dir, mutant.file);
    writeFileSync(target, mutate(mutant, readFileSync(target, 'utf8')));
  }
  return join(dir, DRIVER_PATH);
}
