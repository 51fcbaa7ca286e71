import { DfsError } from '../errors/index.ts';

/** Limits on dfs paths, in UTF-8 bytes, as POSIX's NAME_MAX and PATH_MAX. */
export const PATH_LIMITS = Object.freeze({ maxSegmentBytes: 255, maxPathBytes: 4096, maxDepth: 256 });

export const ROOT = '/';

const encoder = new TextEncoder();
// Control characters (C0, DEL, C1) make names that terminals and scripts mangle.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * The canonical form of a dfs path, or ERR_INVALID_PATH saying what is wrong.
 * Canonical: absolute, Unicode NFC (so names that look alike are alike), no trailing slash
 * (but "/"), no empty, "." or ".." segments, no control characters, within PATH_LIMITS.
 */
export function normalizePath(input: unknown): string {
  // Never String(input): an object from JSON.parse ({"toString":0}) throws converting itself.
  if (typeof input !== 'string') throw invalid(`<${input === null ? 'null' : Array.isArray(input) ? 'array' : typeof input}>`, 'a path is a string');
  const shown = input.length > 100 ? `${input.slice(0, 100)}...` : input;
  if (!input.startsWith('/')) throw invalid(shown, 'paths are absolute: start with "/"');
  const path = input.normalize('NFC');
  if (path === ROOT) return ROOT;
  const body = path.endsWith('/') ? path.slice(1, -1) : path.slice(1);
  const segments = body.split('/');
  if (segments.length > PATH_LIMITS.maxDepth) throw invalid(shown, `more than ${PATH_LIMITS.maxDepth} levels deep`);
  for (const segment of segments) {
    if (segment === '') throw invalid(shown, 'empty path segment ("//")');
    if (segment === '.' || segment === '..') throw invalid(shown, `"${segment}" is not allowed in a path`);
    if (CONTROL.test(segment)) throw invalid(shown, 'control characters are not allowed in names');
    if (encoder.encode(segment).length > PATH_LIMITS.maxSegmentBytes) {
      throw invalid(shown, `a name is longer than ${PATH_LIMITS.maxSegmentBytes} bytes`);
    }
  }
  const canonical = `/${segments.join('/')}`;
  if (encoder.encode(canonical).length > PATH_LIMITS.maxPathBytes) throw invalid(shown, `longer than ${PATH_LIMITS.maxPathBytes} bytes`);
  return canonical;
}

function invalid(path: string, why: string): DfsError {
  return new DfsError('ERR_INVALID_PATH', `invalid path "${path}": ${why}`);
}

/** The parent of a canonical path ("/" for top-level names and for "/" itself). */
export function parentOf(path: string): string {
  if (path === ROOT) return ROOT;
  const cut = path.lastIndexOf('/');
  return cut === 0 ? ROOT : path.slice(0, cut);
}

export function baseName(path: string): string {
  return path === ROOT ? '' : path.slice(path.lastIndexOf('/') + 1);
}

export function joinPath(dir: string, name: string): string {
  return dir === ROOT ? `/${name}` : `${dir}/${name}`;
}

/** True when `path` is `ancestor` or lies below it. */
export function isWithin(path: string, ancestor: string): boolean {
  return ancestor === ROOT || path === ancestor || path.startsWith(`${ancestor}/`);
}
