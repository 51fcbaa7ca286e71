import { DfsError } from '../errors/index.ts';

/**
 * One AbortSignal for a whole exchange: it fires when `timeoutMs` elapses or when the caller's
 * `signal` does. Every await in the network layer takes such a signal, so nothing waits forever.
 */
export function deadlineSignal(timeoutMs: number, signal?: AbortSignal): AbortSignal {
  if (!(timeoutMs > 0)) throw new DfsError('ERR_INVALID_ARGUMENT', `timeoutMs must be positive, got ${timeoutMs}`);
  // AbortSignal.timeout wants a whole number; deadlines computed from performance.now() are not.
  const timeout = AbortSignal.timeout(Math.ceil(timeoutMs));
  return signal ? AbortSignal.any([signal, timeout]) : timeout;
}

/**
 * The DfsError for an aborted signal: ERR_TIMEOUT when a deadline passed, ERR_ABORTED when the
 * caller cancelled, or the DfsError the signal was aborted with.
 */
export function errorFromAbort(signal: AbortSignal, what: string): DfsError {
  const reason: unknown = signal.reason;
  if (reason instanceof DfsError) return reason;
  if (reason instanceof Error && reason.name === 'TimeoutError') {
    return new DfsError('ERR_TIMEOUT', `${what}: timed out`, { cause: reason });
  }
  return new DfsError('ERR_ABORTED', `${what}: cancelled`, { cause: reason });
}

/** `work`, or the rejection `errorFromAbort(signal, what)` as soon as `signal` aborts. */
export function raceAbort<T>(work: Promise<T>, signal: AbortSignal, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(errorFromAbort(signal, what));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
