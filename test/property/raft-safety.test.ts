import { describe } from 'vitest';
import { FAULT_SUITES, defineSimProperties } from '../support/raft-sim-schedules.ts';

/**
 * Random fault schedules (network drops, duplicates, delays and reordering; partitions,
 * one-way cuts and leader isolation; crashes before persisting, between persisting and sending,
 * and after sending) against 3- and 5-server clusters. After every event the simulator checks
 * Election Safety, Leader Append-Only, Log Matching, Leader Completeness, State Machine Safety,
 * same apply order, linearizable ReadIndex and durable commit; after the schedule it heals
 * everything and requires a leader and three committed proposals within a bound.
 */
describe('raft simulation under faults', () => {
  defineSimProperties(FAULT_SUITES);
});
