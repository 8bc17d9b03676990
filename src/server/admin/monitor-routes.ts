/**
 * Monitor routes: /admin/resources/history, /admin/events (server-sent events), /admin/alerts.
 *
 * The event stream: one `event: <type>` + `data: <json>` record per FeedEvent (sample,
 * level-change, alert, model, reaction), a `hello` record first with the level and the latest
 * sample, and a comment every 15 s so proxies keep the connection. Contract: when the client
 * leaves, its subscription and timer are removed at once (no leaked listeners). A slow client
 * never grows the daemon's memory: while more than 1 MiB waits in its socket buffer, samples
 * are skipped (other events, being rare, are still queued).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { HeadroomError } from '../../lib/errors.js';
import type { FeedEvent, MonitorFeed } from '../../monitor/feed.js';
import type { ServerCore } from '../core.js';

export const EVENT_TYPES = ['sample', 'level-change', 'alert', 'model', 'reaction'] as const;

export const historyQuery = z.object({
  limit: z.coerce.number().int().min(1).max(86_400).optional(),
});
export const eventsQuery = z.object({
  /** Comma-separated event types to receive; defaults to all. */
  types: z
    .string()
    .max(200)
    .optional()
    .transform((s, ctx) => {
      if (s === undefined || s === '') return undefined;
      const list = s.split(',').map((t) => t.trim());
      const bad = list.filter((t) => !(EVENT_TYPES as readonly string[]).includes(t));
      if (bad.length > 0) {
        ctx.addIssue({
          code: 'custom',
          message: `unknown event type(s) ${bad.join(', ')}; known: ${EVENT_TYPES.join(', ')}`,
        });
        return z.NEVER;
      }
      return new Set(list);
    }),
});

export class MonitorDisabledError extends HeadroomError {
  override readonly name = 'MonitorDisabledError';
  constructor() {
    super(
      'monitor_disabled',
      'The memory monitor is off (monitor.enabled: false in the config); enable it to see resources, events and alerts.',
      { status: 503 },
    );
  }
}

const HEARTBEAT_MS = 15_000;
const MAX_BUFFERED = 1024 * 1024;

function feedOf(core: ServerCore): MonitorFeed {
  if (!core.monitor) throw new MonitorDisabledError();
  return core.monitor;
}

export function monitorRoutes(app: FastifyInstance, core: ServerCore): void {
  // Open streams end when the server closes (clients reconnect), so they never hold up shutdown.
  const open = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const end of [...open]) end();
  });

  app.get('/admin/resources/history', async (req) => {
    const { limit } = historyQuery.parse(req.query);
    const feed = feedOf(core);
    return { level: feed.level(), samples: feed.history(limit) };
  });

  app.get('/admin/alerts', async () => feedOf(core).alerts());

  app.get('/admin/events', async (req, reply) => {
    const { types } = eventsQuery.parse(req.query);
    const feed = feedOf(core);
    const res = reply.raw;
    reply.hijack();
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    const write = (event: string, data: unknown): void => {
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    write('hello', { level: feed.level(), latest: feed.latest() ?? null });

    const onEvent = (e: FeedEvent): void => {
      if (types && !types.has(e.type)) return;
      if (res.writableEnded || res.destroyed) return;
      if (e.type === 'sample' && res.writableLength > MAX_BUFFERED) return;
      const { type, ...rest } = e;
      write(type, 'sample' in rest ? rest.sample : rest);
    };
    const unsubscribe = feed.subscribe(onEvent);
    const heartbeat = setInterval(() => {
      if (!res.writableEnded) res.write(': keep-alive\n\n');
    }, HEARTBEAT_MS);
    heartbeat.unref();
    const end = (): void => {
      if (!res.writableEnded) res.end();
    };
    open.add(end);
    const cleanup = (): void => {
      unsubscribe();
      clearInterval(heartbeat);
      open.delete(end);
    };
    // 'close' fires once the client leaves or the server closes the socket.
    res.once('close', cleanup);
    req.raw.once('close', () => {
      if (res.writableEnded || res.destroyed || req.raw.destroyed) {
        cleanup();
        if (!res.writableEnded) res.end();
      }
    });
  });
}
