/**
 * Raised when the core reaches a state that correct code cannot reach. Bad input from peers
 * never raises this (it is dropped and counted); only a bug in the core or a broken caller
 * contract (for example ready() twice without advance()) does.
 */
export class RaftInvariantError extends Error {
  constructor(message: string) {
    super(`raft invariant violated: ${message}`);
    this.name = 'RaftInvariantError';
  }
}

export function invariant(condition: boolean, message: string): asserts condition {
  if (!condition) throw new RaftInvariantError(message);
}

export function assertNever(value: never, what: string): never {
  throw new RaftInvariantError(`unhandled ${what}: ${JSON.stringify(value)}`);
}
