import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MUTANTS, MutantRotError, REPO_ROOT, mutate, plant } from './mutants.ts';
import { formatTable, runMutant } from './run.ts';

/**
 * The mutants of `npm run mutants` must stay plantable: each text to replace must still be in
 * the source, or the mutant would silently test nothing. Running them all takes minutes and is
 * its own command; DFS_MUTANTS=1 runs it here too.
 */
describe('mutants', () => {
  const dirs: string[] = [];
  const tempDir = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'dfs-mutant-test-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('have distinct names', () => {
    expect(new Set(MUTANTS.map((m) => m.name)).size).toBe(MUTANTS.length);
  });

  for (const mutant of MUTANTS) {
    it(`plants: ${mutant.name}`, () => {
      const dir = tempDir();
      plant(mutant, dir);
      const original = readFileSync(join(REPO_ROOT, mutant.file), 'utf8');
      const planted = readFileSync(join(dir, mutant.file), 'utf8');
      expect(planted).not.toBe(original);
      expect(planted).toBe(original.replace(mutant.find, () => mutant.replace));
    });
  }

  it('refuse to plant a mutant whose text is gone or ambiguous', () => {
    const gone = { name: 'gone', file: 'src/raft/log.ts', find: 'this text is not in the core', replace: '' };
    expect(() => plant(gone, tempDir())).toThrow(MutantRotError);
    expect(() => mutate({ ...gone, find: 'a' }, 'a a')).toThrow(/occurs 2 times/);
  });

  it.runIf(process.env.DFS_MUTANTS === '1')(
    'are all caught within the default number of schedules',
    async () => {
      const outcomes = [];
      for (const mutant of [null, ...MUTANTS]) outcomes.push(await runMutant(mutant, Number(process.env.DFS_SIM_RUNS ?? 10_000), 1));
      console.log(formatTable(outcomes));
      expect(outcomes[0]!.result.caught).toBe(false);
      expect(outcomes.slice(1).filter((o) => !o.result.caught).map((o) => o.name)).toEqual([]);
    },
    60 * 60_000,
  );
});
