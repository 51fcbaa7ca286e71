import { collectDefaultMetrics, Registry } from 'prom-client';
import type { HttpRoute } from './http-server.ts';

export { parseListenAddress, startHttpServer } from './http-server.ts';
export type { HttpRoute, HttpServerOptions, RunningHttpServer } from './http-server.ts';

/**
 * One Prometheus registry per process (never prom-client's global one, so tests that run a
 * master and nodes in one process keep their figures apart), with Node's own process metrics
 * (CPU, memory, event-loop lag, GC) under `dfs_process_` and `dfs_nodejs_` labelled with the process's role.
 */
export function createMetricsRegistry(labels: { readonly role: 'master' | 'node'; readonly name: string }): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ role: labels.role, process_name: labels.name });
  collectDefaultMetrics({ register: registry, prefix: 'dfs_' });
  return registry;
}

/** The /metrics route of a registry, in Prometheus' text format. */
export function metricsRoute(registry: Registry): HttpRoute {
  return { contentType: registry.contentType, body: () => registry.metrics() };
}
