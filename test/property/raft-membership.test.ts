import { describe } from 'vitest';
import { MEMBERSHIP_SUITES, defineSimProperties } from '../support/raft-sim-schedules.ts';

/**
 * Random schedules heavy in single-server membership changes (learners joining, promotion,
 * removal of followers and leaders), leadership transfers and compaction, under the same faults
 * and the same checks as raft-safety.test.ts.
 */
describe('raft simulation with membership changes', () => {
  defineSimProperties(MEMBERSHIP_SUITES);
});
