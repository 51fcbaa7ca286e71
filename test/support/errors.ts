import { expect } from 'vitest';
import { DfsError } from '../../src/errors/index.ts';

/** The DfsError a promise rejects with; fails the test if it resolves or rejects otherwise. */
export async function rejection(promise: Promise<unknown>): Promise<DfsError> {
  const err = await promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DfsError);
  return err as DfsError;
}
