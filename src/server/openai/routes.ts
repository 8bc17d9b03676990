import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodType } from 'zod';
import type { ServerCore } from '../core.js';
import { forwardToRunner } from '../forward.js';
import { requestSignal } from '../../lib/request-signal.js';
import { chatCompletionRequest, completionRequest } from './schemas.js';

/** OpenAI-compatible routes: /v1/models, /v1/chat/completions, /v1/completions. */
export function openaiRoutes(app: FastifyInstance, core: ServerCore): void {
  app.get('/v1/models', async () => ({
    object: 'list',
    data: core.manager.list().map((m) => ({
      id: m.name,
      object: 'model',
      created: Math.floor((m.loadedAt ?? core.startedAt) / 1000),
      owned_by: 'headroom',
      state: m.state,
      ...(m.config ? { context_size: m.config.contextSize } : {}),
    })),
  }));

  const proxy = (path: string, schema: ZodType<{ model: string }>) =>
    async function handler(req: FastifyRequest, reply: FastifyReply): Promise<void> {
      const body = schema.parse(req.body);
      const { signal, dispose } = requestSignal(reply.raw);
      let lease;
      try {
        lease = await core.manager.acquire(body.model, { signal });
      } finally {
        dispose();
      }
      reply.hijack();
      forwardToRunner({ lease, path, body: req.body, res: reply.raw });
    };

  app.post('/v1/chat/completions', proxy('/v1/chat/completions', chatCompletionRequest));
  app.post('/v1/completions', proxy('/v1/completions', completionRequest));
}
