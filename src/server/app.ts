import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from '../lib/logger.js';
import { adminRoutes } from './admin/routes.js';
import { monitorRoutes } from './admin/monitor-routes.js';
import { configRoutes } from './admin/config-routes.js';
import { ollamaRoutes } from './ollama/routes.js';
import type { ServerCore } from './core.js';
import { dashboardRoutes } from './dashboard-routes.js';
import { NotFoundError, handleClientError, makeErrorHandler } from './errors.js';
import { metricsRoutes } from './metrics-routes.js';
import { openaiRoutes } from './openai/routes.js';
import { openapiRoutes } from './openapi.js';
import { registerSecurity, type SecurityOptions } from './security.js';

export interface AppOptions {
  log: Logger;
  /** Largest request body accepted, in bytes. */
  bodyLimit: number;
  /** Host allowlist, Origin check, CORS and API key (security.ts). Defaults to loopback, no key. */
  security?: SecurityOptions;
}

const ROUTES = new WeakMap<FastifyInstance, string[]>();

/** `METHOD /path` of every route the app registered (HEAD left out), once it is ready. */
export function registeredRoutes(app: FastifyInstance): string[] {
  return [...(ROUTES.get(app) ?? [])];
}
/** Longest a client may take to send a whole request (headers and body); slow senders get 408. */
const REQUEST_TIMEOUT_MS = 60_000;

/**
 * The HTTP app as a value: routes over a core, one error handler, no port opened.
 * Tests call `app.inject()`; the daemon calls `app.listen()`.
 */
export function createApp(core: ServerCore, opts: AppOptions): FastifyInstance {
  const loggerInstance: FastifyBaseLogger = opts.log;
  const app = Fastify({
    loggerInstance,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimit,
    return503OnClosing: true,
    requestTimeout: REQUEST_TIMEOUT_MS,
    clientErrorHandler: handleClientError,
  });
  // Every route registered, for the check that the OpenAPI document lists them all.
  const routes: string[] = [];
  ROUTES.set(app, routes);
  app.addHook('onRoute', (r) => {
    for (const m of [r.method].flat()) if (m !== 'HEAD') routes.push(`${m} ${r.url}`);
  });
  app.setErrorHandler(makeErrorHandler(opts.log));
  registerSecurity(app, opts.security ?? {});
  // JSON only (the Ollama routes read any body as JSON on their own): a text/plain body gets 415
  // "send application/json" rather than a confusing "expected object, received string".
  app.removeContentTypeParser('text/plain');
  app.setNotFoundHandler((req) => {
    throw new NotFoundError(
      `No route ${req.method} ${req.url.split('?')[0]}. See /v1/models, /v1/chat/completions, /admin/models.`,
      'unknown_route',
    );
  });
  app.get('/health', async () => ({ status: 'ok', version: core.version }));
  openaiRoutes(app, core);
  adminRoutes(app, core);
  monitorRoutes(app, core);
  configRoutes(app, core);
  ollamaRoutes(app, core);
  metricsRoutes(app, core);
  dashboardRoutes(app);
  openapiRoutes(app, core.version);
  return app;
}
