import { DfsError } from '../errors/index.ts';

/**
 * A tiny runtime validator for JSON wire messages. Every protocol parses what it receives with a
 * schema before using it: the value a schema returns is typed (`Infer<typeof s>`), holds only the
 * fields the schema names (unknown fields are dropped, so a newer peer's extra fields are
 * harmless), and a mismatch throws ERR_PROTOCOL naming the first bad field, e.g.
 * `field nodes[2].addr: expected string, got number`.
 *
 * Binary fields travel as base64 strings (`schema.bytes()`); `encodeWire` turns Uint8Arrays into
 * base64 on the way out, so senders can pass the same typed values they receive.
 */
export interface Schema<T> {
  /** Validates `input` (a JSON.parse result) and returns it typed; throws ERR_PROTOCOL. */
  parse(input: unknown): T;
  /** Same as parse, with the path of `input` inside the message for error messages. */
  parseAt(input: unknown, path: string): T;
  /** What the schema accepts, for error messages ("string", "integer", "object"...). */
  readonly expected: string;
}

export type Infer<S> = S extends Schema<infer T> ? T : never;

/** Marks a field that may be absent (or undefined) in an object schema. */
export interface OptionalSchema<T> extends Schema<T | undefined> {
  readonly isOptional: true;
}

export interface ObjectSchema<T extends object> extends Schema<T> {
  readonly shape: Readonly<Record<string, Schema<unknown>>>;
}

type Shape = Record<string, Schema<unknown>>;
type Simplify<T> = { [K in keyof T]: T[K] } & {};
type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K] extends OptionalSchema<unknown> ? K : never }[keyof S];
type InferShape<S extends Shape> = Simplify<
  { [K in Exclude<keyof S, OptionalKeys<S>>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Infer<S[K]> }
>;
type InferTagged<Tag extends string, V extends Record<string, ObjectSchema<object>>> = {
  [K in keyof V & string]: Simplify<{ [P in Tag]: K } & Infer<V[K]>>;
}[keyof V & string];

function fail(path: string, expected: string, input: unknown): never {
  return failWith(path, `expected ${expected}, got ${describe(input)}`);
}

function failWith(path: string, problem: string): never {
  throw new DfsError('ERR_PROTOCOL', `${path === '' ? 'message' : `field ${path}`}: ${problem}`);
}

function describe(input: unknown): string {
  if (input === null) return 'null';
  if (Array.isArray(input)) return 'array';
  if (typeof input === 'string') return input.length <= 32 ? `string ${JSON.stringify(input)}` : 'string';
  if (typeof input === 'number') return Number.isFinite(input) ? `number ${input}` : String(input);
  return typeof input;
}

function isPlainObject(input: unknown): input is Record<string, unknown> {
  return typeof input === 'object' && input !== null && !Array.isArray(input);
}

function define<T>(expected: string, parseAt: (input: unknown, path: string) => T): Schema<T> {
  return { expected, parseAt, parse: (input) => parseAt(input, '') };
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

export interface StringOptions {
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly pattern?: RegExp;
}

function string(options: StringOptions = {}): Schema<string> {
  const { minLength = 0, maxLength = Infinity, pattern } = options;
  const expected = pattern ? `string matching ${pattern}` : 'string';
  return define(expected, (input, path) => {
    if (typeof input !== 'string') return fail(path, expected, input);
    if (input.length < minLength) return failWith(path, `expected at least ${minLength} characters, got ${input.length}`);
    if (input.length > maxLength) return failWith(path, `expected at most ${maxLength} characters, got ${input.length}`);
    if (pattern && !pattern.test(input)) return fail(path, expected, input);
    return input;
  });
}

export interface NumberOptions {
  readonly min?: number;
  readonly max?: number;
}

function number(options: NumberOptions = {}): Schema<number> {
  return numeric('number', Number.isFinite, options);
}

/** A safe integer (JSON numbers beyond 2^53 lose precision, so they are refused). */
function integer(options: NumberOptions = {}): Schema<number> {
  return numeric('integer', Number.isSafeInteger, options);
}

function numeric(name: string, accepts: (n: number) => boolean, { min = -Infinity, max = Infinity }: NumberOptions): Schema<number> {
  const range = min === -Infinity && max === Infinity ? '' : ` in [${min}, ${max}]`;
  const expected = `${name}${range}`;
  return define(expected, (input, path) => {
    if (typeof input !== 'number' || !accepts(input) || input < min || input > max) return fail(path, expected, input);
    return input;
  });
}

function boolean(): Schema<boolean> {
  return define('boolean', (input, path) => (typeof input === 'boolean' ? input : fail(path, 'boolean', input)));
}

function literal<const T extends string | number | boolean | null>(value: T): Schema<T> {
  const expected = JSON.stringify(value);
  return define(expected, (input, path) => (input === value ? value : fail(path, expected, input)));
}

/** One of a fixed set of strings. */
function oneOf<const T extends readonly [string, ...string[]]>(values: T): Schema<T[number]> {
  const allowed = new Set<string>(values);
  const expected = `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`;
  return define(expected, (input, path) =>
    typeof input === 'string' && allowed.has(input) ? (input as T[number]) : fail(path, expected, input),
  );
}

export interface ArrayOptions {
  /** Required: every array on the wire is bounded, so a peer cannot make us walk a huge one. */
  readonly maxLength: number;
  readonly minLength?: number;
}

function array<T>(item: Schema<T>, { maxLength, minLength = 0 }: ArrayOptions): Schema<T[]> {
  const expected = `array of ${item.expected}`;
  return define(expected, (input, path) => {
    if (!Array.isArray(input)) return fail(path, expected, input);
    if (input.length > maxLength) return failWith(path, `expected at most ${maxLength} items, got ${input.length}`);
    if (input.length < minLength) return failWith(path, `expected at least ${minLength} items, got ${input.length}`);
    const out = new Array<T>(input.length);
    for (let i = 0; i < input.length; i++) out[i] = item.parseAt(input[i], `${path}[${i}]`);
    return out;
  });
}

function optional<T>(inner: Schema<T>): OptionalSchema<T> {
  const parseAt = (input: unknown, path: string): T | undefined => (input === undefined ? undefined : inner.parseAt(input, path));
  return { expected: `${inner.expected} or absent`, isOptional: true, parseAt, parse: (input) => parseAt(input, '') };
}

function nullable<T>(inner: Schema<T>): Schema<T | null> {
  return define(`${inner.expected} or null`, (input, path) => (input === null ? null : inner.parseAt(input, path)));
}

/** An object with the given fields. Fields not in `shape` are dropped from the result. */
function object<const S extends Shape>(shape: S): ObjectSchema<InferShape<S>> {
  const entries = Object.entries(shape);
  const parseAt = (input: unknown, path: string): InferShape<S> => {
    if (!isPlainObject(input)) return fail(path, 'object', input);
    const out: Record<string, unknown> = {};
    for (const [key, field] of entries) {
      const value = Object.hasOwn(input, key) ? input[key] : undefined;
      const parsed = field.parseAt(value, join(path, key));
      if (parsed !== undefined) out[key] = parsed;
    }
    return out as InferShape<S>;
  };
  return { expected: 'object', shape, parseAt, parse: (input) => parseAt(input, '') };
}

/**
 * A union of object variants told apart by the string field `tag`:
 * `taggedUnion('type', { get: object({ path }), put: object({ path, size }) })` accepts
 * `{ type: 'get', path }` or `{ type: 'put', path, size }`, and the result keeps `type`.
 */
function taggedUnion<const Tag extends string, const V extends Record<string, ObjectSchema<object>>>(
  tag: Tag,
  variants: V,
): Schema<InferTagged<Tag, V>> {
  const names = Object.keys(variants);
  const expectedTag = `one of ${names.map((n) => JSON.stringify(n)).join(', ')}`;
  return define(`object tagged by "${tag}"`, (input, path) => {
    if (!isPlainObject(input)) return fail(path, 'object', input);
    const value = Object.hasOwn(input, tag) ? input[tag] : undefined;
    const variant = typeof value === 'string' && Object.hasOwn(variants, value) ? variants[value] : undefined;
    if (variant === undefined) return fail(join(path, tag), expectedTag, value);
    return { [tag]: value, ...variant.parseAt(input, path) } as InferTagged<Tag, V>;
  });
}

export interface BytesOptions {
  readonly maxBytes?: number;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Binary data, carried as a canonical base64 string and returned as a Uint8Array. */
function bytes({ maxBytes = Infinity }: BytesOptions = {}): Schema<Uint8Array> {
  const expected = 'base64 string';
  return define(expected, (input, path) => {
    if (typeof input !== 'string' || !BASE64.test(input)) return fail(path, expected, input);
    // Checked before decoding so that an oversized field costs nothing to refuse.
    if ((input.length / 4) * 3 > maxBytes + 2) return failWith(path, `expected at most ${maxBytes} bytes`);
    const decoded = Buffer.from(input, 'base64');
    if (decoded.byteLength > maxBytes) return failWith(path, `expected at most ${maxBytes} bytes, got ${decoded.byteLength}`);
    return new Uint8Array(decoded.buffer, decoded.byteOffset, decoded.byteLength);
  });
}

/** Anything JSON can hold, unchecked: for opaque payloads that another layer validates. */
function unknownValue(): Schema<unknown> {
  return define('any value', (input) => input);
}

/** The schema builders. */
export const schema = {
  string,
  number,
  integer,
  boolean,
  literal,
  oneOf,
  array,
  optional,
  nullable,
  object,
  taggedUnion,
  bytes,
  unknown: unknownValue,
} as const;

/**
 * JSON text for a wire message: like JSON.stringify, but Uint8Arrays (and Buffers) become base64
 * strings, which `schema.bytes()` turns back into Uint8Arrays on the other side.
 */
export function encodeWire(value: unknown): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, key: string, converted: unknown) {
    // `this[key]` is the value before toJSON ran (Buffer.toJSON would make it an array of numbers).
    const raw = this[key];
    if (raw instanceof Uint8Array) return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64');
    return converted;
  });
}
