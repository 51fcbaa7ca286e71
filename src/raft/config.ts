import type { ConfChange, ConfChangeType, Configuration, Refusal } from './types.ts';

/** Longest server id the wire codec accepts; a longer id could never be sent to a peer. */
export const MAX_ID_LENGTH = 256;

export const CONF_CHANGE_TYPES: readonly ConfChangeType[] = ['addVoter', 'addLearner', 'removeNode'];

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
  const invalid = confChangeProblem(change);
  if (invalid !== null) return { ok: false, reason: 'invalid_argument', detail: invalid };
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
    default:
      return { ok: false, reason: 'invalid_argument', detail: `unknown change type ${String((change as { type: unknown }).type)}` };
  }
}

/** Why `change` (from an untyped caller) is not a well-formed ConfChange, or null if it is. */
export function confChangeProblem(change: unknown): string | null {
  if (typeof change !== 'object' || change === null) return 'change must be an object';
  const { type, id } = change as { type?: unknown; id?: unknown };
  if (typeof type !== 'string' || !(CONF_CHANGE_TYPES as readonly string[]).includes(type)) {
    return `change.type must be one of ${CONF_CHANGE_TYPES.join(', ')}`;
  }
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) {
    return `change.id must be a non-empty string of at most ${MAX_ID_LENGTH} characters`;
  }
  return null;
}

export function isValidConfiguration(config: Configuration): boolean {
  const all = members(config);
  return all.every((id) => typeof id === 'string' && id.length > 0) && new Set(all).size === all.length;
}
