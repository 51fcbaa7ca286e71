import type { ConfChange, Configuration, Refusal } from './types.ts';

export const EMPTY_CONFIG: Configuration = { voters: [], learners: [] };

export function isVoter(config: Configuration, id: string): boolean {
  return config.voters.includes(id);
}

export function isLearner(config: Configuration, id: string): boolean {
  return config.learners.includes(id);
}

export function isMember(config: Configuration, id: string): boolean {
  return isVoter(config, id) || isLearner(config, id);
}

export function members(config: Configuration): string[] {
  return [...config.voters, ...config.learners];
}

/** Size of a majority of the voters; 0 voters is never a quorum. */
export function quorumSize(config: Configuration): number {
  return Math.floor(config.voters.length / 2) + 1;
}

export function sameConfig(a: Configuration, b: Configuration): boolean {
  const key = (c: Configuration) => `${[...c.voters].sort().join(',')}|${[...c.learners].sort().join(',')}`;
  return key(a) === key(b);
}

/**
 * The configuration after a single-server change, or the refusal if the change makes no sense
 * against `config`. Promotion to voter is only allowed for an existing learner, so that every new
 * voter has caught up as a learner first (thesis 4.2.1); the caller checks the catching up.
 */
export function applyConfChange(config: Configuration, change: ConfChange): Configuration | Refusal {
  const { id } = change;
  switch (change.type) {
    case 'addLearner':
      if (isMember(config, id)) return { ok: false, reason: 'already_member' };
      return { voters: [...config.voters], learners: [...config.learners, id] };
    case 'addVoter':
      if (isVoter(config, id)) return { ok: false, reason: 'already_member' };
      if (!isLearner(config, id)) return { ok: false, reason: 'not_a_learner' };
      return { voters: [...config.voters, id], learners: config.learners.filter((l) => l !== id) };
    case 'removeNode':
      if (!isMember(config, id)) return { ok: false, reason: 'not_a_member' };
      if (isVoter(config, id) && config.voters.length === 1) return { ok: false, reason: 'would_remove_last_voter' };
      return { voters: config.voters.filter((v) => v !== id), learners: config.learners.filter((l) => l !== id) };
  }
}

export function isValidConfiguration(config: Configuration): boolean {
  const all = members(config);
  return all.every((id) => typeof id === 'string' && id.length > 0) && new Set(all).size === all.length;
}
