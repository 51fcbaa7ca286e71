import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DfsError } from '../../src/errors/index.ts';
import { encodeWire, schema } from '../../src/net/index.ts';
import type { Infer, Schema } from '../../src/net/index.ts';

const node = schema.object({
  id: schema.string({ minLength: 1, maxLength: 64 }),
  addr: schema.string({ pattern: /^\/ip[46]\// }),
  role: schema.oneOf(['master', 'storage']),
  freeBytes: schema.integer({ min: 0 }),
  load: schema.optional(schema.number({ min: 0, max: 1 })),
});
const heartbeat = schema.object({
  v: schema.literal(1),
  alive: schema.boolean(),
  nodes: schema.array(node, { maxLength: 3 }),
  leader: schema.nullable(schema.string()),
});
const command = schema.taggedUnion('op', {
  put: schema.object({ path: schema.string(), data: schema.bytes({ maxBytes: 8 }) }),
  rm: schema.object({ path: schema.string(), recursive: schema.optional(schema.boolean()) }),
});

function errorOf(s: Schema<unknown>, input: unknown): string {
  try {
    s.parse(input);
  } catch (err) {
    expect(err).toBeInstanceOf(DfsError);
    expect((err as DfsError).code).toBe('ERR_PROTOCOL');
    return (err as DfsError).message;
  }
  throw new Error(`accepted ${JSON.stringify(input)}`);
}

const goodNode = { id: 'n1', addr: '/ip4/10.0.0.1/tcp/7000', role: 'storage', freeBytes: 123 };

describe('schema', () => {
  it('accepts good messages, typed, and drops unknown fields', () => {
    const parsed = heartbeat.parse({ v: 1, alive: true, nodes: [goodNode, { ...goodNode, load: 0.5, extra: 'x' }], leader: null, future: 1 });
    const typed: Infer<typeof heartbeat> = parsed;
    expect(typed).toEqual({ v: 1, alive: true, nodes: [goodNode, { ...goodNode, load: 0.5 }], leader: null });
    expect('future' in parsed).toBe(false);
    expect(Object.hasOwn(parsed.nodes[0] ?? {}, 'load')).toBe(false);
  });

  it('names the first bad field with its path', () => {
    const msg = (nodes: unknown[]): unknown => ({ v: 1, alive: true, nodes, leader: 'm1' });
    expect(errorOf(heartbeat, msg([goodNode, goodNode, { ...goodNode, addr: 7 }]))).toBe('field nodes[2].addr: expected string matching /^\\/ip[46]\\//, got number 7');
    expect(errorOf(heartbeat, msg([{ ...goodNode, addr: 'tcp://x' }]))).toMatch(/^field nodes\[0\]\.addr: expected string matching/);
    expect(errorOf(heartbeat, msg([{ ...goodNode, role: 'boss' }]))).toBe('field nodes[0].role: expected one of "master", "storage", got string "boss"');
    expect(errorOf(heartbeat, msg([{ ...goodNode, freeBytes: 1.5 }]))).toBe('field nodes[0].freeBytes: expected integer in [0, Infinity], got number 1.5');
    expect(errorOf(heartbeat, msg([{ ...goodNode, freeBytes: -1 }]))).toMatch(/freeBytes: expected integer in \[0, Infinity\], got number -1/);
    expect(errorOf(heartbeat, msg([{ ...goodNode, freeBytes: 2 ** 60 }]))).toMatch(/freeBytes: expected integer/);
    expect(errorOf(heartbeat, msg([{ ...goodNode, load: 2 }]))).toMatch(/^field nodes\[0\]\.load: expected number in \[0, 1\]/);
    expect(errorOf(heartbeat, msg([{ ...goodNode, id: '' }]))).toBe('field nodes[0].id: expected at least 1 characters, got 0');
    expect(errorOf(heartbeat, msg([goodNode, goodNode, goodNode, goodNode]))).toBe('field nodes: expected at most 3 items, got 4');
    expect(errorOf(heartbeat, msg([null]))).toBe('field nodes[0]: expected object, got null');
    expect(errorOf(heartbeat, { v: 2, alive: true, nodes: [], leader: null })).toBe('field v: expected 1, got number 2');
    expect(errorOf(heartbeat, { v: 1, nodes: [], leader: null })).toBe('field alive: expected boolean, got undefined');
    expect(errorOf(heartbeat, { v: 1, alive: true, nodes: {}, leader: null })).toMatch(/^field nodes: expected array of object, got object/);
    expect(errorOf(heartbeat, [1])).toBe('message: expected object, got array');
    expect(errorOf(heartbeat, 'hi')).toBe('message: expected object, got string "hi"');
    expect(errorOf(schema.number(), Number.NaN)).toBe('message: expected number, got NaN');
  });

  it('does not read inherited properties', () => {
    const withProto = Object.create({ v: 1, alive: true, nodes: [], leader: null }) as unknown;
    expect(errorOf(heartbeat, withProto)).toBe('field v: expected 1, got undefined');
    // JSON.parse makes "__proto__" an own key; it must not become the result's prototype.
    const parsed = schema.object({ a: schema.optional(schema.string()) }).parse(JSON.parse('{"__proto__": {"polluted": true}, "a": "x"}'));
    expect(Object.getPrototypeOf(parsed)).toBe(Object.prototype);
  });

  it('tells union variants apart by their tag', () => {
    expect(command.parse({ op: 'rm', path: '/a', recursive: true })).toEqual({ op: 'rm', path: '/a', recursive: true });
    const put = command.parse({ op: 'put', path: '/b', data: 'AAEC' });
    expect(put.op === 'put' && [...put.data]).toEqual([0, 1, 2]);
    expect(errorOf(command, { op: 'mv', path: '/a' })).toBe('field op: expected one of "put", "rm", got string "mv"');
    expect(errorOf(command, { path: '/a' })).toBe('field op: expected one of "put", "rm", got undefined');
    expect(errorOf(command, { op: 'put', path: '/b', data: 'AAEC!' })).toBe('field data: expected base64 string, got string "AAEC!"');
    expect(errorOf(command, { op: 'put', path: '/b', data: 'AAECAwQFBgcI' })).toBe('field data: expected at most 8 bytes, got 9');
    expect(errorOf(command, { op: 'put', path: '/b', data: 'A'.repeat(4000) })).toBe('field data: expected at most 8 bytes');
  });

  it('round-trips values through encodeWire, including binary fields', () => {
    const blobSchema = schema.object({ name: schema.string(), data: schema.bytes(), tags: schema.array(schema.string(), { maxLength: 10 }) });
    fc.assert(
      fc.property(fc.string(), fc.uint8Array({ maxLength: 300 }), fc.array(fc.string(), { maxLength: 10 }), (name, data, tags) => {
        const decoded = blobSchema.parse(JSON.parse(encodeWire({ name, data, tags })));
        expect(decoded.name).toBe(name);
        expect([...decoded.data]).toEqual([...data]);
        expect(decoded.tags).toEqual(tags);
      }),
    );
    expect(JSON.parse(encodeWire({ b: Buffer.from([1, 2]) }))).toEqual({ b: 'AQI=' });
  });

  it('rejects every value of the wrong JSON type', () => {
    const json = fc.jsonValue();
    fc.assert(
      fc.property(json, (value) => {
        if (typeof value !== 'string') expect(() => schema.string().parse(value)).toThrow(DfsError);
        if (typeof value !== 'boolean') expect(() => schema.boolean().parse(value)).toThrow(DfsError);
        if (typeof value !== 'number') expect(() => schema.number().parse(value)).toThrow(DfsError);
        if (!Array.isArray(value)) expect(() => schema.array(schema.unknown(), { maxLength: 1e6 }).parse(value)).toThrow(DfsError);
      }),
    );
  });
});
