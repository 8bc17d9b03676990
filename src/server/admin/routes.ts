import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { contextSizeSchema, kvCacheTypeSchema, parallelSchema } from '../../lib/runner-sizes.js';
import type { ModelStatus } from '../../scheduler/model-manager.js';
import type { ServerCore } from '../core.js';
import { once } from 'node:events';
import { requestSignal } from '../../lib/request-signal.js';
import { followLog } from './log-follow.js';

export const nameParams = z.object({ name: z.string().min(1).max(256) });
export const unloadBody = z.object({ force: z.boolean().optional() }).strict().nullish();
/** Optional config for a management load: what the loaded config must serve. */
export const loadBody = z
  .object({
    contextSize: contextSizeSchema.optional(),
    kv: kvCacheTypeSchema.optional(),
    parallel: parallelSchema.optional(),
    /** Idle time before unload: ms, or null for never (Ollama keep_alive). */
    keepAliveMs: z.number().int().min(0).nullable().optional(),
  })
  .strict()
  .nullish();
export const pinBody = z.object({ pinned: z.boolean() }).strict();
export const logsQuery = z.object({
  bytes: z.coerce
    .number()
    .int()
    .min(1)
    .max(16 * 1024 * 1024)
    .default(16384),
  /** Keep the response open and send what the runner appends (`tail -F`). */
  follow: z.enum(['true', 'false', '1', '0']).optional(),
});

/** Management API: /admin/models, load/unload, /admin/resources, logs. */
export function adminRoutes(app: FastifyInstance, core: ServerCore): void {
  // Followed logs end when the server closes, so they never hold up the daemon's shutdown.
  const closing = new AbortController();
  app.addHook('preClose', async () => closing.abort());

  /**
   * A model's status plus its memory: `memory.predicted.total` (the plan), `memory.measured`
   * (rss, rssAnon and peak read from /proc now, when it runs) and `memory.allocated` (the ledger),
   * and `savedState`: its conversations saved on disk (entries, bytes).
   */
  const describe = async (m: ModelStatus) => {
    const live =
      m.pid !== undefined && (m.state === 'ready' || m.state === 'draining')
        ? await core.processMemory(m.pid)
        : undefined;
    const rss = live?.rss ?? m.measured;
    const peak = live?.peak ?? m.peak;
    return {
      ...m,
      predicted: m.predicted ?? null,
      measured: rss ?? null,
      peak: peak ?? null,
      lastUsedAt: m.lastUsedAt ?? null,
      expiresAt: m.expiresAt ?? null,
      // Conversations saved on disk for this model (state across unloads); null: not kept.
      savedState: core.savedState?.(m.name) ?? null,
      memory: {
        predicted: { total: m.predicted ?? null },
        allocated: m.allocated ?? null,
        measured: {
          rss: rss ?? null,
          rssAnon: live?.rssAnon ?? null,
          peak: peak ?? null,
        },
      },
    };
  };

  app.get('/admin/models', async () => ({
    models: await Promise.all(core.manager.list().map(describe)),
  }));

  app.get('/admin/models/:name', async (req) => {
    const { name } = nameParams.parse(req.params);
    return describe(core.manager.status(name));
  });

  app.post('/admin/models/:name/load', async (req, reply) => {
    const { name } = nameParams.parse(req.params);
    const body = loadBody.parse(req.body ?? null);
    const { signal, dispose } = requestSignal(reply.raw);
    try {
      return await describe(
        await core.manager.load(name, {
          signal,
          ...(body?.contextSize !== undefined ? { contextSize: body.contextSize } : {}),
          ...(body?.kv !== undefined ? { kv: body.kv } : {}),
          ...(body?.parallel !== undefined ? { parallel: body.parallel } : {}),
          ...(body?.keepAliveMs !== undefined ? { keepAliveMs: body.keepAliveMs } : {}),
        }),
      );
    } finally {
      dispose();
    }
  });

  app.post('/admin/models/:name/unload', async (req) => {
    const { name } = nameParams.parse(req.params);
    const body = unloadBody.parse(req.body ?? null);
    return describe(await core.manager.unload(name, { force: body?.force ?? false }));
  });

  /** Pins (`{"pinned": true}`) or unpins a model until the daemon stops. */
  app.post('/admin/models/:name/pin', async (req) => {
    const { name } = nameParams.parse(req.params);
    const { pinned } = pinBody.parse(req.body ?? {});
    return describe(core.manager.pin(name, pinned));
  });

  /**
   * The ledger (budget, reserved by loads in progress, measured of running runners, free) and per
   * model: allocated (ledger), used (RSS now), peak, and the plan's buffers (model weights,
   * context = KV cache, working = compute buffers + runtime). `gpus` is the same ledger for each
   * GPU by device index (budget and free are null for a GPU without a budget; `measured` is the
   * plan's figure, as runners do not report VRAM), and each model's `gpus` the bytes it holds on
   * each GPU (empty when none).
   */
  app.get('/admin/resources', async () => {
    const r = core.manager.resources();
    const live = new Map(core.manager.list().map((m) => [m.name, m]));
    const models = await Promise.all(
      r.models.map(async (m) => {
        const pid = live.get(m.name)?.pid;
        const mem = pid !== undefined ? await core.processMemory(pid) : undefined;
        return {
          name: m.name,
          state: m.state,
          allocated: m.allocated,
          predicted: m.predicted,
          used: mem?.rss ?? m.used ?? null,
          peak: mem?.peak ?? m.peak ?? null,
          buffers: m.buffers ?? null,
          gpus: m.gpus,
        };
      }),
    );
    const finite = (n: number) => (Number.isFinite(n) ? n : null);
    return {
      budget: finite(r.ledger.budget),
      reserved: r.ledger.reserved,
      measured: r.ledger.measured,
      free: finite(r.ledger.free),
      gpus: r.gpus.map((g) => ({
        index: g.index,
        budget: finite(g.budget),
        reserved: g.reserved,
        measured: g.measured,
        free: finite(g.free),
      })),
      models,
    };
  });

  app.get('/admin/logs/:name', async (req, reply) => {
    const { name } = nameParams.parse(req.params);
    const { bytes, follow } = logsQuery.parse(req.query);
    core.manager.status(name); // 404 for unknown models
    if ((follow === 'true' || follow === '1') && core.logFile) {
      const file = core.logFile(name);
      const { signal, dispose } = requestSignal(reply.raw);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/plain; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        'x-accel-buffering': 'no',
      });
      try {
        const until = AbortSignal.any([signal, closing.signal]);
        for await (const chunk of followLog(file, { fromBytes: bytes, signal: until })) {
          // Backpressure: the next chunk is read only once this one is taken.
          if (!res.write(chunk)) await once(res, 'drain', { signal: until }).catch(() => undefined);
        }
      } catch (err) {
        req.log.warn({ err, model: name }, 'following a runner log failed');
      } finally {
        dispose();
        if (!res.writableEnded) res.end();
      }
      return;
    }
    void reply.type('text/plain; charset=utf-8');
    return core.logTail(name, bytes);
  });
}
