import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DfsError } from '../errors/index.ts';
import { type Logger, silentLogger } from '../log/index.ts';

/**
 * The small HTTP server every dfs process may run for operators (`--http HOST:PORT`): Prometheus
 * metrics at /metrics and, on masters, a status page at / with its data at /status.json.
 *
 * It is read-only and serves nothing secret (no paths, no user names, no tokens), and it binds to
 * loopback unless told otherwise; still it is an open port, so it is bounded like every other:
 * few connections, short header and request timeouts, GET and HEAD only, no request bodies.
 */
export interface HttpRoute {
  readonly contentType: string;
  /** The body; thrown DfsErrors become a 503 with the message (e.g. "not the leader"). */
  readonly body: () => Promise<string> | string;
}

export interface HttpServerOptions {
  /** host:port; port 0 picks a free one (see `address`). */
  readonly listen: string;
  readonly routes: Readonly<Record<string, HttpRoute>>;
  readonly logger?: Logger;
  /** Open connections at once; more are refused by the kernel backlog. Default 32. */
  readonly maxConnections?: number;
}

export interface RunningHttpServer {
  /** host:port actually bound. */
  readonly address: string;
  close(): Promise<void>;
}

/** Parses `host:port` (`[::1]:9000` for IPv6); ERR_USAGE for anything else. */
export function parseListenAddress(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65_535)) throw new DfsError('ERR_USAGE', `--http wants HOST:PORT (e.g. 127.0.0.1:9464), not "${text}"`);
  return { host: (m[1] ?? m[2])!, port };
}

export async function startHttpServer(options: HttpServerOptions): Promise<RunningHttpServer> {
  const log = (options.logger ?? silentLogger).child({ component: 'http' });
  const { host, port } = parseListenAddress(options.listen);
  const server = createServer({ requestTimeout: 10_000, headersTimeout: 5_000, maxHeaderSize: 8 * 1024 }, (req, res) => {
    void answer(req, res, options.routes, log);
  });
  server.maxConnections = options.maxConnections ?? 32;
  server.keepAliveTimeout = 5_000;
  await listen(server, host, port);
  const bound = server.address() as AddressInfo;
  const address = bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
  log.info({ address }, 'serving metrics and status over HTTP');
  return {
    address,
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
      }),
  };
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const failed = (err: Error): void => reject(new DfsError('ERR_USAGE', `cannot serve HTTP on ${host}:${port}: ${err.message}`, { cause: err }));
    server.once('error', failed);
    server.listen(port, host, () => {
      server.off('error', failed);
      // Later socket errors (a client resetting) are the client's problem, never a crash.
      server.on('error', () => {});
      resolve();
    });
  });
}

async function answer(req: IncomingMessage, res: ServerResponse, routes: Readonly<Record<string, HttpRoute>>, log: Logger): Promise<void> {
  res.on('error', () => {});
  const path = (req.url ?? '/').split('?')[0]!;
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain; charset=utf-8', 'only GET and HEAD\n', { allow: 'GET, HEAD' });
  const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
  if (!route) return send(res, 404, 'text/plain; charset=utf-8', `no such page: ${path} (try ${Object.keys(routes).join(', ')})\n`);
  try {
    const body = await route.body();
    send(res, 200, route.contentType, req.method === 'HEAD' ? '' : body);
  } catch (err) {
    // A DfsError's message is written for users ("not the leader"); any other error's may name
    // files or internals, so a stranger on this open port gets a generic line and the log the rest.
    const message = err instanceof DfsError ? err.message : 'internal error (see the process log)';
    if (!(err instanceof DfsError)) log.warn({ path, err: err instanceof Error ? err.message : String(err) }, 'an HTTP page failed');
    send(res, 503, 'text/plain; charset=utf-8', `${message}\n`);
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers });
  res.end(body);
}
