import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ServerCore } from '../core.js';
import { relay, type PreparedBody, type RelayRequest } from '../relay.js';
import {
  contextOverflowPolicy,
  runnerTokenizer,
  truncateMiddle,
  type ContextOverflowPolicy,
} from '../overflow.js';
import { chatCompletionRequest, completionRequest, embeddingRequest } from './schemas.js';

/**
 * OpenAI-compatible routes: /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings.
 *
 * A request's path: validate → relay (relay.ts: acquire a lease, queue, load) → apply the context
 * policy (chat) → forward to the runner and stream back as it is. The client going away while the
 * policy counts tokens abandons the count and releases the lease.
 */
export function openaiRoutes(app: FastifyInstance, core: ServerCore): void {
  app.get('/v1/models', async () => ({
    object: 'list',
    data: core.manager.list().map((m) => ({
      id: m.name,
      object: 'model',
      created: Math.floor((m.loadedAt ?? core.startedAt) / 1000),
      // Models found in another tool's store are that tool's; `source` says which.
      owned_by: m.source?.kind ?? 'headroom',
      source: m.source?.kind ?? 'headroom',
      state: m.state,
      ...(m.config ? { context_size: m.config.contextSize } : {}),
    })),
  }));

  const handle = (
    path: string,
    reply: FastifyReply,
    body: { model: string; stream?: boolean | null | undefined },
    prepare: RelayRequest['prepare'],
  ): Promise<void> =>
    relay(core, reply, {
      model: body.model,
      endpoint: path,
      stream: body.stream === true,
      path,
      prepare,
    });

  app.post('/v1/chat/completions', async (req, reply) => {
    const body = chatCompletionRequest.parse(req.body);
    await handle('/v1/chat/completions', reply, body, async (lease, signal, span) => {
      const policy = body.context_overflow ?? modelPolicy(core, body.model);
      const out = withUsage(req.body as Record<string, unknown>, body.stream === true);
      delete out.body.context_overflow;
      if (policy === 'truncate_middle') {
        const r = await truncateMiddle({
          messages: body.messages,
          contextSize: lease.config.contextSize,
          maxTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined,
          tokenize: runnerTokenizer(lease.url),
          signal,
        });
        if (r.dropped > 0) {
          out.body.messages = r.messages;
          out.headers = { 'x-headroom-context-dropped-messages': String(r.dropped) };
          span.dropped(r.dropped);
        }
      }
      return out;
    });
  });

  app.post('/v1/embeddings', async (req, reply) => {
    const body = embeddingRequest.parse(req.body);
    await handle('/v1/embeddings', reply, body, async () => ({ body: req.body }));
  });

  app.post('/v1/completions', async (req, reply) => {
    const body = completionRequest.parse(req.body);
    await handle('/v1/completions', reply, body, async () =>
      withUsage(req.body as Record<string, unknown>, body.stream === true),
    );
  });
}

/**
 * The body to forward: for streams, ask the runner for the usage event (token counts for the
 * metrics) and strip it again when the client did not ask for it.
 */
function withUsage(
  raw: Record<string, unknown>,
  stream: boolean,
): PreparedBody & { body: Record<string, unknown> } {
  const body = { ...raw };
  if (!stream) return { body };
  const so = body.stream_options as { include_usage?: boolean } | null | undefined;
  if (so?.include_usage === true) return { body };
  body.stream_options = { ...so, include_usage: true };
  return { body, stripUsage: true };
}

/**
 * The model's configured policy (`models.<name>.contextOverflow` in the config), when the config
 * has that key; else `error`.
 */
function modelPolicy(core: ServerCore, name: string): ContextOverflowPolicy {
  const config = (core as ServerCore & { config?: { models?: Record<string, unknown> } }).config;
  const entry = config?.models?.[name] as { contextOverflow?: unknown } | undefined;
  const parsed = contextOverflowPolicy.safeParse(entry?.contextOverflow);
  return parsed.success ? parsed.data : 'error';
}
