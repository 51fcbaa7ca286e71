import pino from 'pino';

/**
 * Structured logs. Every process writes one JSON object a line to its process log (stderr);
 * the level comes from `DFS_LOG` (trace, debug, info, warn, error, fatal, silent; default info).
 * Components take a `Logger` through their options, so tests and the simulator inject a
 * `MemoryLogger` and read what was said (the simulator prints it on a failure).
 */
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
export type LogFields = Record<string, unknown>;

export interface Logger {
  trace(fields: LogFields, msg: string): void;
  debug(fields: LogFields, msg: string): void;
  info(fields: LogFields, msg: string): void;
  warn(fields: LogFields, msg: string): void;
  error(fields: LogFields, msg: string): void;
  fatal(fields: LogFields, msg: string): void;
  /** A logger whose every line also carries `bindings` (component, peer id, ...). */
  child(bindings: LogFields): Logger;
}

const LEVELS: readonly string[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** The level `DFS_LOG` asks for; an unknown value falls back to info (and is not fatal). */
export function levelFromEnv(env: NodeJS.ProcessEnv = process.env): LogLevel | 'silent' {
  const wanted = (env.DFS_LOG ?? '').trim().toLowerCase();
  return (LEVELS.includes(wanted) ? wanted : 'info') as LogLevel | 'silent';
}

/**
 * The process logger: pino, synchronous writes to stderr (a line is on its way out before a
 * crash or an exit that follows it), `name` and `pid` on every line.
 */
export function createLogger(options: { name: string; level?: LogLevel | 'silent'; fd?: number }): Logger {
  return pino(
    { name: options.name, level: options.level ?? levelFromEnv(), base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ fd: options.fd ?? 2, sync: true }),
  );
}

export interface LogRecord {
  readonly level: LogLevel;
  readonly msg: string;
  readonly fields: LogFields;
}

/** Keeps lines in memory (bounded: the oldest go first): for tests and the simulator. */
export class MemoryLogger implements Logger {
  readonly records: LogRecord[];
  readonly #bindings: LogFields;
  readonly #max: number;

  constructor(options: { max?: number; records?: LogRecord[]; bindings?: LogFields } = {}) {
    this.records = options.records ?? [];
    this.#bindings = options.bindings ?? {};
    this.#max = options.max ?? 10_000;
  }

  trace(fields: LogFields, msg: string): void {
    this.#add('trace', fields, msg);
  }
  debug(fields: LogFields, msg: string): void {
    this.#add('debug', fields, msg);
  }
  info(fields: LogFields, msg: string): void {
    this.#add('info', fields, msg);
  }
  warn(fields: LogFields, msg: string): void {
    this.#add('warn', fields, msg);
  }
  error(fields: LogFields, msg: string): void {
    this.#add('error', fields, msg);
  }
  fatal(fields: LogFields, msg: string): void {
    this.#add('fatal', fields, msg);
  }

  child(bindings: LogFields): Logger {
    return new MemoryLogger({ max: this.#max, records: this.records, bindings: { ...this.#bindings, ...bindings } });
  }

  /** The lines whose message matches `pattern`. */
  find(pattern: RegExp): LogRecord[] {
    return this.records.filter((r) => pattern.test(r.msg));
  }

  /** The records as text lines, for a failure report. */
  dump(): string {
    return this.records.map((r) => `${r.level} ${r.msg} ${JSON.stringify(r.fields)}`).join('\n');
  }

  #add(level: LogLevel, fields: LogFields, msg: string): void {
    if (this.records.length >= this.#max) this.records.shift();
    this.records.push({ level, msg, fields: { ...this.#bindings, ...fields } });
  }
}

/** Says nothing: the default where no logger is injected. */
export const silentLogger: Logger = {
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error() {},
  fatal() {},
  child() {
    return silentLogger;
  },
};
