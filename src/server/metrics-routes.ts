import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { ServingMetrics, type ManagerEventLike } from '../metrics/serving.js';
import type { ServerCore } from './core.js';

/** GET /admin/requests?limit=N */
export const requestsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100_000).optional(),
});

/**
 * GET /metrics (Prometheus text exposition) and GET /admin/requests (the last N requests as JSON,
 * newest first; `?limit=` for fewer).
 */
export function metricsRoutes(app: FastifyInstance, core: ServerCore): void {
  const metrics = metricsOf(core);
  app.get('/metrics', async (_req, reply) => {
    const text = await metrics.exposition();
    void reply.header('content-type', metrics.contentType);
    return text;
  });
  const query = requestsQuery;
  app.get('/admin/requests', async (req) => {
    const { limit } = query.parse(req.query);
    return { capacity: metrics.recentCapacity, requests: metrics.recent(limit) };
  });
}

const byCore = new WeakMap<object, ServingMetrics>();

/** What a core may carry to supply its own metrics instance (e.g. with another capacity). */
interface WithMetrics {
  metrics?: unknown;
}

interface EventSource {
  on?: (event: 'event', listener: (e: ManagerEventLike) => void) => unknown;
}

/**
 * The metrics of a core: its own `metrics` field when it has one, else one instance per core
 * made here, reading models, ledger and pressure from the core at scrape time, and counting the
 * manager's events (loads, unloads by reason, crashes) when the manager is an event emitter
 * (the ModelManager is). Routes and the composition root share the instance through this call.
 */
export function metricsOf(core: ServerCore): ServingMetrics {
  const own = (core as ServerCore & WithMetrics).metrics;
  if (own instanceof ServingMetrics) return own;
  let m = byCore.get(core);
  if (m) return m;
  m = new ServingMetrics({
    models: () =>
      core.manager
        .list()
        .map((m) => (m.config?.engine !== undefined ? { ...m, engine: m.config.engine } : m)),
    ledger: () => core.manager.resources().ledger,
    pressure: () => core.monitor?.level(),
  });
  const source = core.manager as unknown as EventSource;
  if (typeof source.on === 'function') {
    const metrics = m;
    // Lives as long as the manager; one listener per core.
    source.on('event', (e) => metrics.observeManagerEvent(e));
  }
  byCore.set(core, m);
  return m;
}
