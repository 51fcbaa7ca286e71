import * as nodeCrypto from 'node:crypto';
import { argon2id } from 'hash-wasm';
import { DfsError } from '../errors/index.ts';
import type { Rng } from '../env/index.ts';
import { schema } from '../net/schema.ts';

/**
 * Password hashing: argon2id (RFC 9106), parameters stored beside the hash.
 *
 * **Passwords are secrets: never log them, never put them in an error message, a command, a Raft
 * entry or a snapshot.** Only the stored string below goes into the replicated state. Nothing in
 * this module logs, and its errors never quote the password.
 *
 * Stored form: the PHC string format that every argon2 tool reads and writes,
 *
 *     $argon2id$v=19$m=<memory KiB>,t=<iterations>,p=<parallelism>$<salt>$<hash>
 *
 * (salt and hash in base64 without padding), so a stored value says how to check it and the
 * parameters can be raised later: `needsRehash` tells a master to store a fresh hash after a
 * successful login with old parameters.
 *
 * Defaults: OWASP's argon2id minimum, 19 MiB, t=2, p=1, a 16-byte salt and a 32-byte hash.
 * Tests pass cheaper parameters.
 *
 * Backends: `hash-wasm` (wasm, runs on the calling thread: ~tens of ms per hash at the defaults,
 * during which the event loop is blocked) and Node's own `crypto.argon2` (Node >= 24.7: native, on
 * the libuv thread pool, so a master's Raft timers keep running during a login). `'auto'` (the
 * default) takes the native one when this Node has it, else hash-wasm; both give identical results
 * (tested against each other and against the reference implementation's vector).
 */
export interface Argon2Params {
  /** Memory in KiB (argon2's m). */
  readonly memoryKiB: number;
  /** Passes over memory (argon2's t). */
  readonly iterations: number;
  /** Lanes (argon2's p). */
  readonly parallelism: number;
  /** Bytes of hash output. Default 32. */
  readonly hashBytes?: number;
}

export const DEFAULT_ARGON2_PARAMS: Readonly<Required<Argon2Params>> = Object.freeze({ memoryKiB: 19_456, iterations: 2, parallelism: 1, hashBytes: 32 });
export const SALT_BYTES = 16;
/** Longest password accepted, in UTF-8 bytes (argon2's cost does not depend on it, but memory does). */
export const MAX_PASSWORD_BYTES = 1024;

/** The bounds a stored value's parameters must be within (anything else is malformed, so false). */
export const ARGON2_LIMITS = Object.freeze({
  memoryKiB: { min: 8, max: 1_048_576 }, // 1 GiB
  iterations: { min: 1, max: 64 },
  parallelism: { min: 1, max: 16 },
  saltBytes: { min: 8, max: 64 },
  hashBytes: { min: 16, max: 64 },
});

export type Argon2Backend = 'auto' | 'wasm' | 'native';

export interface HashPasswordOptions {
  /** Source of the salt's bytes (a seeded rng in tests). Default: node:crypto's randomBytes. */
  readonly rng?: Rng;
  /** The salt itself (SALT_BYTES is the usual size); wins over `rng`. */
  readonly salt?: Uint8Array;
  /** Argon2 parameters; each missing one is DEFAULT_ARGON2_PARAMS's. */
  readonly params?: Partial<Argon2Params>;
  readonly backend?: Argon2Backend;
}

/** A parsed stored value. */
export interface StoredPassword {
  readonly algorithm: 'argon2id';
  readonly version: 19;
  readonly params: Readonly<Required<Argon2Params>>;
  readonly salt: Uint8Array;
  readonly hash: Uint8Array;
}

const encoder = new TextEncoder();

function passwordBytes(password: string): Uint8Array {
  // NFC: the same-looking password typed on two systems gives the same bytes.
  return encoder.encode(password.normalize('NFC'));
}

function checkParam(name: keyof typeof ARGON2_LIMITS, value: number): void {
  const { min, max } = ARGON2_LIMITS[name];
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new DfsError('ERR_INVALID_ARGUMENT', `argon2 ${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
}

function resolveParams(params: Partial<Argon2Params> | undefined): Required<Argon2Params> {
  const p = { ...DEFAULT_ARGON2_PARAMS, ...params };
  checkParam('memoryKiB', p.memoryKiB);
  checkParam('iterations', p.iterations);
  checkParam('parallelism', p.parallelism);
  checkParam('hashBytes', p.hashBytes);
  if (p.memoryKiB < 8 * p.parallelism) throw new DfsError('ERR_INVALID_ARGUMENT', `argon2 memoryKiB must be at least 8 x parallelism (${8 * p.parallelism}), got ${p.memoryKiB}`);
  return p;
}

function saltFrom(options: HashPasswordOptions): Uint8Array {
  if (options.salt !== undefined) {
    checkParam('saltBytes', options.salt.byteLength);
    return options.salt;
  }
  const { rng } = options;
  if (rng === undefined) return nodeCrypto.randomBytes(SALT_BYTES);
  const salt = new Uint8Array(SALT_BYTES);
  for (let i = 0; i < salt.length; i++) salt[i] = Math.floor(rng() * 256) & 0xff;
  return salt;
}

const hasNativeArgon2 = typeof nodeCrypto.argon2 === 'function';

/** Which backend `'auto'` uses in this process. */
export function argon2Backend(preference: Argon2Backend = 'auto'): 'wasm' | 'native' {
  if (preference === 'native' && !hasNativeArgon2) throw new DfsError('ERR_INVALID_ARGUMENT', `this Node (${process.version}) has no crypto.argon2; use the wasm backend`);
  return preference === 'wasm' || !hasNativeArgon2 ? 'wasm' : 'native';
}

async function argon2Raw(password: Uint8Array, salt: Uint8Array, p: Required<Argon2Params>, backend: Argon2Backend): Promise<Uint8Array> {
  if (argon2Backend(backend) === 'native') {
    return new Promise((resolve, reject) => {
      nodeCrypto.argon2(
        'argon2id',
        { message: password, nonce: salt, parallelism: p.parallelism, tagLength: p.hashBytes, memory: p.memoryKiB, passes: p.iterations },
        (err, key) => (err ? reject(err) : resolve(new Uint8Array(key.buffer, key.byteOffset, key.byteLength))),
      );
    });
  }
  return argon2id({
    password,
    salt,
    iterations: p.iterations,
    parallelism: p.parallelism,
    memorySize: p.memoryKiB,
    hashLength: p.hashBytes,
    outputType: 'binary',
  });
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64').replace(/=+$/, '');
}

export function formatStoredPassword(stored: StoredPassword): string {
  const { memoryKiB: m, iterations: t, parallelism: p } = stored.params;
  return `$argon2id$v=19$m=${m},t=${t},p=${p}$${b64(stored.salt)}$${b64(stored.hash)}`;
}

/**
 * Hashes `password` for storage. Throws ERR_INVALID_ARGUMENT (without quoting the password) for an
 * empty or over-long one, or parameters out of ARGON2_LIMITS.
 */
export async function hashPassword(password: string, options: HashPasswordOptions = {}): Promise<string> {
  if (typeof password !== 'string' || password.length === 0) throw new DfsError('ERR_INVALID_ARGUMENT', 'a password must be a non-empty string');
  const bytes = passwordBytes(password);
  if (bytes.byteLength > MAX_PASSWORD_BYTES) throw new DfsError('ERR_INVALID_ARGUMENT', `a password must be at most ${MAX_PASSWORD_BYTES} bytes (UTF-8)`);
  const params = resolveParams(options.params);
  const salt = saltFrom(options);
  const hash = await argon2Raw(bytes, salt, params, options.backend ?? 'auto');
  return formatStoredPassword({ algorithm: 'argon2id', version: 19, params, salt, hash });
}

const B64_NOPAD = /^[A-Za-z0-9+/]+$/;
const PHC = /^\$argon2id\$v=19\$m=([0-9]{1,8}),t=([0-9]{1,3}),p=([0-9]{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

function decodeB64(text: string): Uint8Array | undefined {
  if (!B64_NOPAD.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return b64(bytes) === text ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : undefined;
}

function within(name: keyof typeof ARGON2_LIMITS, value: number): boolean {
  const { min, max } = ARGON2_LIMITS[name];
  return Number.isSafeInteger(value) && value >= min && value <= max;
}

/** The parsed stored value, or undefined when it is not a well-formed argon2id v19 string within ARGON2_LIMITS. */
export function parseStoredPassword(stored: unknown): StoredPassword | undefined {
  if (typeof stored !== 'string' || stored.length > 512) return undefined;
  const m = PHC.exec(stored);
  if (m === null) return undefined;
  const memoryKiB = Number(m[1]);
  const iterations = Number(m[2]);
  const parallelism = Number(m[3]);
  const salt = decodeB64(m[4] ?? '');
  const hash = decodeB64(m[5] ?? '');
  if (salt === undefined || hash === undefined) return undefined;
  if (!within('memoryKiB', memoryKiB) || !within('iterations', iterations) || !within('parallelism', parallelism)) return undefined;
  if (memoryKiB < 8 * parallelism || !within('saltBytes', salt.byteLength) || !within('hashBytes', hash.byteLength)) return undefined;
  return { algorithm: 'argon2id', version: 19, params: { memoryKiB, iterations, parallelism, hashBytes: hash.byteLength }, salt, hash };
}

/** What the replicated state holds for a user's password: validate it with this when decoding. */
export const storedPasswordSchema = schema.string({ maxLength: 512, pattern: PHC });

export interface VerifyPasswordOptions {
  readonly backend?: Argon2Backend;
}

// For unknown users: a stored value with the default parameters, so that "no such user" takes as
// long as "wrong password" and timing does not tell which user names exist.
const DUMMY_STORED = formatStoredPassword({
  algorithm: 'argon2id',
  version: 19,
  params: DEFAULT_ARGON2_PARAMS,
  salt: new Uint8Array(SALT_BYTES),
  hash: new Uint8Array(DEFAULT_ARGON2_PARAMS.hashBytes),
});

/**
 * Whether `password` matches `stored`. The comparison is constant-time. Never throws: a malformed
 * stored value, a non-string or over-long password is false. Pass `undefined` for a user that does
 * not exist: the same work is done (with the default parameters) and the answer is false.
 */
export async function verifyPassword(password: string, stored: string | undefined, options: VerifyPasswordOptions = {}): Promise<boolean> {
  const parsed = parseStoredPassword(stored ?? DUMMY_STORED);
  if (parsed === undefined) return false;
  const bytes = typeof password === 'string' ? passwordBytes(password) : new Uint8Array(0);
  const usable = typeof password === 'string' && bytes.byteLength > 0 && bytes.byteLength <= MAX_PASSWORD_BYTES;
  let computed: Uint8Array;
  try {
    computed = await argon2Raw(usable ? bytes : encoder.encode('-'), parsed.salt, parsed.params, options.backend ?? 'auto');
  } catch {
    return false;
  }
  const equal = computed.byteLength === parsed.hash.byteLength && nodeCrypto.timingSafeEqual(computed, parsed.hash);
  return equal && usable && stored !== undefined;
}

/** True when `stored` should be replaced by a fresh hash (different or weaker parameters than `params`). */
export function needsRehash(stored: string, params: Partial<Argon2Params> = {}): boolean {
  const parsed = parseStoredPassword(stored);
  if (parsed === undefined) return true;
  const want = resolveParams(params);
  const have = parsed.params;
  return have.memoryKiB !== want.memoryKiB || have.iterations !== want.iterations || have.parallelism !== want.parallelism || have.hashBytes !== want.hashBytes;
}
