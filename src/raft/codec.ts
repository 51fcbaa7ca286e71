import { Buffer } from 'node:buffer';
import type { ConfigEntry, Configuration, Entry, Snapshot } from './types.ts';
import type { Message } from './messages.ts';
import { MESSAGE_TYPES } from './messages.ts';
import { MAX_ID_LENGTH, isValidConfiguration } from './config.ts';

/**
 * Shape checks and the wire codec. A peer is not trusted: decodeMessage and validateMessage
 * return null for anything malformed instead of throwing. The wire form is UTF-8 JSON in which
 * every Uint8Array is a base64 string.
 */

/**
 * Longest context RaftNode.readIndex accepts. The caller's context never goes on the wire (the
 * leader confirms reads with its own round numbers, see read-only.ts); the bound only keeps the
 * pending-read bookkeeping small.
 */
export const MAX_READ_CONTEXT_LENGTH = 1024;
/** A read round on the wire: a positive safe integer in decimal, without leading zeros. */
const READ_ROUND = /^[1-9][0-9]{0,15}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isId(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_ID_LENGTH;
}

/** Encodes a leader's read round (a positive safe integer) for a heartbeat's `context`. */
export function encodeReadRound(round: number): string {
  return String(round);
}

/** The read round carried by a heartbeat's `context`, or null if it carries none or a malformed one. */
export function decodeReadRound(value: unknown): number | null {
  if (typeof value !== 'string' || !READ_ROUND.test(value)) return null;
  const round = Number(value);
  return Number.isSafeInteger(round) ? round : null;
}

function isReadRoundOrNull(value: unknown): value is string | null {
  return value === null || decodeReadRound(value) !== null;
}

export function validateConfiguration(value: unknown): Configuration | null {
  if (!isObject(value) || !Array.isArray(value.voters) || !Array.isArray(value.learners)) return null;
  if (!value.voters.every(isId) || !value.learners.every(isId)) return null;
  const config: Configuration = { voters: [...value.voters], learners: [...value.learners] };
  return isValidConfiguration(config) ? config : null;
}

function validateEntry(value: unknown): Entry | null {
  if (!isObject(value) || !isCount(value.index) || !isCount(value.term)) return null;
  if (value.index === 0 || value.term === 0) return null;
  if (value.type !== 'normal' && value.type !== 'config') return null;
  if (!(value.data instanceof Uint8Array)) return null;
  if (value.type === 'config' && decodeConfigEntry(value.data) === null) return null;
  return { index: value.index, term: value.term, type: value.type, data: value.data };
}

function validateSnapshot(value: unknown): Snapshot | null {
  if (!isObject(value) || !isObject(value.metadata) || !(value.data instanceof Uint8Array)) return null;
  const { index, term } = value.metadata;
  const config = validateConfiguration(value.metadata.config);
  if (!isCount(index) || !isCount(term) || config === null) return null;
  if ((index === 0) !== (term === 0)) return null;
  return { metadata: { index, term, config }, data: value.data };
}

/** Append entries must follow prevLogIndex contiguously with terms that never go back. */
function validateEntries(value: unknown, prevIndex: number, prevTerm: number, term: number): Entry[] | null {
  if (!Array.isArray(value)) return null;
  const entries: Entry[] = [];
  let lastTerm = prevTerm;
  for (const raw of value) {
    const entry = validateEntry(raw);
    if (entry === null || entry.index !== prevIndex + 1 + entries.length) return null;
    if (entry.term < lastTerm || entry.term > term) return null;
    lastTerm = entry.term;
    entries.push(entry);
  }
  return entries;
}

/** Returns a well-formed Message built from `value`, or null. Never throws. */
export function validateMessage(value: unknown): Message | null {
  if (!isObject(value) || typeof value.type !== 'string') return null;
  const { from, to, term } = value;
  if (!isId(from) || !isId(to) || !isCount(term)) return null;
  const envelope = { from, to, term };
  switch (value.type) {
    case 'preVote':
    case 'vote': {
      const { lastLogIndex, lastLogTerm, transfer } = value;
      if (!isCount(lastLogIndex) || !isCount(lastLogTerm) || typeof transfer !== 'boolean') return null;
      if (lastLogTerm > term) return null;
      return { type: value.type, ...envelope, lastLogIndex, lastLogTerm, transfer };
    }
    case 'preVoteResp':
    case 'voteResp':
      if (typeof value.reject !== 'boolean') return null;
      return { type: value.type, ...envelope, reject: value.reject };
    case 'append': {
      const { prevLogIndex, prevLogTerm, commit } = value;
      if (!isCount(prevLogIndex) || !isCount(prevLogTerm) || !isCount(commit) || prevLogTerm > term) return null;
      const entries = validateEntries(value.entries, prevLogIndex, prevLogTerm, term);
      if (entries === null) return null;
      return { type: 'append', ...envelope, prevLogIndex, prevLogTerm, entries, commit };
    }
    case 'appendResp': {
      const { reject, index, rejectHint, logTerm } = value;
      if (typeof reject !== 'boolean' || !isCount(index) || !isCount(rejectHint) || !isCount(logTerm)) return null;
      return { type: 'appendResp', ...envelope, reject, index, rejectHint, logTerm };
    }
    case 'heartbeat':
      if (!isCount(value.commit) || !isReadRoundOrNull(value.context)) return null;
      return { type: 'heartbeat', ...envelope, commit: value.commit, context: value.context };
    case 'heartbeatResp':
      if (!isReadRoundOrNull(value.context)) return null;
      return { type: 'heartbeatResp', ...envelope, context: value.context };
    case 'installSnapshot': {
      const snapshot = validateSnapshot(value.snapshot);
      if (snapshot === null || snapshot.metadata.term > term) return null;
      return { type: 'installSnapshot', ...envelope, snapshot };
    }
    case 'timeoutNow':
      return { type: 'timeoutNow', ...envelope };
    default:
      return null;
  }
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

function fromBase64(value: unknown): Uint8Array | null {
  if (typeof value !== 'string' || value.length % 4 !== 0 || !BASE64.test(value)) return null;
  return new Uint8Array(Buffer.from(value, 'base64'));
}

/** Encodes a message for the wire (UTF-8 JSON, payloads in base64). */
export function encodeMessage(message: Message): Uint8Array {
  const wire = JSON.stringify(message, (_key, value: unknown) => (value instanceof Uint8Array ? toBase64(value) : value));
  return textEncoder.encode(wire);
}

/** Decodes and validates a message from the wire; null for anything malformed. */
export function decodeMessage(bytes: Uint8Array): Message | null {
  let raw: unknown;
  try {
    raw = JSON.parse(textDecoder.decode(bytes));
  } catch {
    return null;
  }
  if (!isObject(raw)) return null;
  // Only the fields that hold bytes are turned back into Uint8Array; a base64 string anywhere
  // else stays a string and fails validation.
  if (Array.isArray(raw.entries)) {
    const entries: unknown[] = [];
    for (const entry of raw.entries) {
      if (!isObject(entry)) return null;
      const data = fromBase64(entry.data);
      if (data === null) return null;
      entries.push({ ...entry, data });
    }
    raw.entries = entries;
  }
  if (isObject(raw.snapshot)) {
    const data = fromBase64(raw.snapshot.data);
    if (data === null) return null;
    raw.snapshot = { ...raw.snapshot, data };
  }
  return validateMessage(raw);
}

/** Encodes the payload of a 'config' entry. */
export function encodeConfigEntry(entry: ConfigEntry): Uint8Array {
  return textEncoder.encode(JSON.stringify(entry));
}

/** Decodes the payload of a 'config' entry; null if malformed. */
export function decodeConfigEntry(data: Uint8Array): ConfigEntry | null {
  let raw: unknown;
  try {
    raw = JSON.parse(textDecoder.decode(data));
  } catch {
    return null;
  }
  if (!isObject(raw) || !isObject(raw.change)) return null;
  const { type, id } = raw.change;
  if ((type !== 'addVoter' && type !== 'addLearner' && type !== 'removeNode') || !isId(id)) return null;
  const config = validateConfiguration(raw.config);
  if (config === null) return null;
  return { change: { type, id }, config };
}
