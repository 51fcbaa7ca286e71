import { afterEach, beforeEach } from 'vitest';

/**
 * Collects every promise rejection nobody handled while each test runs, so a test can assert
 * there was none (vitest stands back while another listener exists, so such tests check it
 * themselves, and the failure lands on the test that caused it). Call at module level.
 */
export function recordUnhandledRejections(): () => unknown[] {
  let unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  beforeEach(() => {
    unhandled = [];
    process.on('unhandledRejection', onUnhandled);
  });
  afterEach(() => {
    process.off('unhandledRejection', onUnhandled);
  });
  return () => unhandled;
}
