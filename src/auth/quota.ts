import { DfsError } from '../errors/index.ts';
import { schema } from '../net/schema.ts';
import type { Infer } from '../net/schema.ts';
import { authError } from './errors.ts';

/**
 * Per-user quotas: bytes and files. Pure accounting; the metadata state keeps a Usage per user
 * and updates it in apply (deterministically, like everything there).
 *
 * What counts: the logical size of every file a user owns (a manifest's size), and the number of
 * files and directories they own. Deduplication does not discount: two users storing the same
 * bytes are each charged in full, so one user's usage does not depend on what others store (and
 * cannot reveal it). Replication is not charged either: quotas are in the user's bytes, not the
 * cluster's. An overwrite is charged the difference (new size - old size, no new file).
 *
 * A put is checked before any chunk is sent (`wouldExceed` with the file's size, known from the
 * source, or re-checked at commit when it was not), and again at commit, since other puts of the
 * same user may have landed meanwhile.
 */
const count = schema.integer({ min: 0 });

export const usageSchema = schema.object({ bytes: count, files: count });
export type Usage = Infer<typeof usageSchema>;

/** A user's limits; an absent one is unlimited. */
export const quotaSchema = schema.object({ maxBytes: schema.optional(count), maxFiles: schema.optional(count) });
export type Quota = Infer<typeof quotaSchema>;

export const ZERO_USAGE: Usage = Object.freeze({ bytes: 0, files: 0 });

export interface QuotaExcess {
  readonly code: 'ERR_QUOTA';
  readonly resource: 'bytes' | 'files';
  readonly limit: number;
  readonly used: number;
  readonly adding: number;
  readonly message: string;
}

function checkDelta(name: string, value: number): void {
  if (!Number.isSafeInteger(value)) throw new DfsError('ERR_INVALID_ARGUMENT', `${name} must be a safe integer, got ${String(value)}`);
}

/** Binary units, for messages: 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${Number(v.toFixed(1))} ${units[u]}`;
}

/**
 * Whether adding `addBytes` and `addFiles` (either may be negative: an overwrite with a smaller file)
 * to `usage` would go over `quota`; null when it would not. Growth only is refused: a change that
 * shrinks or keeps a resource passes even when the user is already over (after a quota was lowered),
 * so users over quota can always delete and overwrite with smaller files.
 */
export function wouldExceed(usage: Usage, quota: Quota | undefined, addBytes: number, addFiles: number): QuotaExcess | null {
  checkDelta('addBytes', addBytes);
  checkDelta('addFiles', addFiles);
  if (quota === undefined) return null;
  return excessOf('bytes', quota.maxBytes, usage.bytes, addBytes) ?? excessOf('files', quota.maxFiles, usage.files, addFiles);
}

const RAISE = 'remove files or ask an admin to raise the quota';

/** The excess of one resource, when growing it by `adding` passes `limit` (growth only: see wouldExceed). */
function excessOf(resource: QuotaExcess['resource'], limit: number | undefined, used: number, adding: number): QuotaExcess | null {
  if (limit === undefined || adding <= 0 || used + adding <= limit) return null;
  const message =
    resource === 'bytes'
      ? `byte quota exceeded: ${formatBytes(used)} used + ${formatBytes(adding)} > ${formatBytes(limit)} allowed; ${RAISE}`
      : `file quota exceeded: ${used} files used + ${adding} > ${limit} allowed; ${RAISE}`;
  return { code: 'ERR_QUOTA', resource, limit, used, adding, message };
}

/** `usage` after a change; never below zero (a usage that would go negative is a bookkeeping bug: throws). */
export function applyUsage(usage: Usage, addBytes: number, addFiles: number): Usage {
  checkDelta('addBytes', addBytes);
  checkDelta('addFiles', addFiles);
  const bytes = usage.bytes + addBytes;
  const files = usage.files + addFiles;
  if (bytes < 0 || files < 0 || !Number.isSafeInteger(bytes)) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `usage would become ${bytes} bytes, ${files} files (from ${usage.bytes}, ${usage.files} with ${addBytes}, ${addFiles})`);
  }
  return { bytes, files };
}

/** The change a put of `newSize` bytes makes: a new file, or an overwrite of one of `oldSize`. */
export function putDelta(newSize: number, oldSize?: number): { readonly addBytes: number; readonly addFiles: number } {
  return oldSize === undefined ? { addBytes: newSize, addFiles: 1 } : { addBytes: newSize - oldSize, addFiles: 0 };
}

/** The error to throw for an excess. */
export function quotaError(excess: QuotaExcess): DfsError {
  return authError(excess.code, excess.message);
}
