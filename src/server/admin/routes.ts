import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ModelStatus } from '../../scheduler/model-manager.js';
import type { ServerCore } from '../core.js';
import { requestSignal } from '../../lib/request-signal.js';

const nameParams = z.object({ name: z.string().min(1).max(256) });
const unloadBody = z.object({ force: z.boolean().optional() }).strict().nullish();
const logsQuery = z.object({
  bytes: z.coerce
    .number()
    .int()
    .min(1)
    .max(16 * 1024 * 1024)
    .default(16384),
});

/** Management API: /admin/models, load/unload, logs. */
export function adminRoutes(app: FastifyInstance, core: ServerCore): void {
  const describe = async (m: ModelStatus) => {
    const memory =
      m.pid !== undefined && (m.state === 'ready' || m.state === 'draining')
        ? await core.processMemory(m.pid)
        : undefined;
    return {
      ...m,
      ...(memory
        ? {
            memory: {
              measured: {
                rss: memory.rss,
                rssAnon: memory.rssAnon ?? null,
                peak: memory.peak ?? null,
              },
            },
          }
        : {}),
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
    const { signal, dispose } = requestSignal(reply.raw);
    try {
      return await describe(await core.manager.load(name, signal));
    } finally {
      dispose();
    }
  });

  app.post('/admin/models/:name/unload', async (req) => {
    const { name } = nameParams.parse(req.params);
    const body = unloadBody.parse(req.body);
    return describe(await core.manager.unload(name, { force: body?.force ?? false }));
  });

  app.get('/admin/logs/:name', async (req, reply) => {
    const { name } = nameParams.parse(req.params);
    const { bytes } = logsQuery.parse(req.query);
    core.manager.status(name); // 404 for unknown models
    void reply.type('text/plain; charset=utf-8');
    return core.logTail(name, bytes);
  });
}
