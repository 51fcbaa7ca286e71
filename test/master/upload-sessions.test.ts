import { describe, expect, it } from 'vitest';
import { MAX_CHUNKS_PER_UPLOAD, UploadSessions } from '../../src/master/upload-sessions.ts';

const idOf = (i: number): string => i.toString(16).padStart(64, '0');

describe('UploadSessions chunk cap', () => {
  it('refuses an upload growing past the cap with new chunks', () => {
    const sessions = new UploadSessions(() => 0, 1000);
    sessions.promise('u', Array.from({ length: MAX_CHUNKS_PER_UPLOAD }, (_, i) => idOf(i)));
    expect(() => sessions.promise('u', [idOf(MAX_CHUNKS_PER_UPLOAD)])).toThrow(/at most/);
  });

  it('counts chunks already promised once: a commit re-promising a large upload is not refused', () => {
    const sessions = new UploadSessions(() => 0, 1000);
    const ids = Array.from({ length: MAX_CHUNKS_PER_UPLOAD / 2 + 1 }, (_, i) => idOf(i));
    sessions.promise('u', ids); // place
    sessions.promise('u', ids); // proveStored
    sessions.promise('u', [...ids, ...ids]); // commitFile: the manifest, one chunk named twice
    expect(sessions.promised(idOf(0))).toBe(true);
  });

  it('counts a placed chunk’s bytes once', () => {
    const sessions = new UploadSessions(() => 0, 1000);
    const sizes = new Map([[idOf(1), 10]]);
    sessions.promise('u', [idOf(1), idOf(1)], 'peer', { user: 'alice', sizes });
    sessions.promise('u', [idOf(1)], 'peer', { user: 'alice', sizes });
    expect(sessions.bytesOf('u')).toBe(10);
  });

  it('an expired upload named again is a new one: the chunks promised before it expired are not promised again', () => {
    let now = 0;
    const sessions = new UploadSessions(() => now, 1000);
    sessions.promise('old', [idOf(1)], 'peer');
    now = 5000; // expired (GC may have taken chunk 1 meanwhile), not yet swept
    sessions.promise('old', [idOf(3)], 'peer');
    expect(sessions.promised(idOf(3))).toBe(true);
    expect(sessions.promised(idOf(1))).toBe(false);
  });
});
