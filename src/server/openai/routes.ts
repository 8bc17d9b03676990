import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isAbortError } from '../../lib/abort.js';
import { describeError, isHeadroomError } from '../../lib/errors.js';
import { requestSignal } from '../../lib/request-signal.js';
import type { RequestSpan } from '../../metrics/requests.js';
import type { Lease } from '../../scheduler/model-manager.js';
import type { ServerCore } from '../core.js';
import { forwardToRunner, type ForwardOptions } from '../forward.js';
import { metricsOf } from '../metrics-routes.js';
import {
  contextOverflowPolicy,
  runnerTokenizer,
  truncateMiddle,
  type ContextOverflowPolicy,
} from '../overflow.js';
import { chatCompletionRequest, completionRequest, embeddingRequest } from './schemas.js';

/**
 * OpenAI-compatible routes: /v1/models, /v1/chat/completions, /v1/completions.
 *
 * A request's path: validate → acquire a lease (queue, load) → apply the context policy (chat) →
 * forward to the runner and stream back. The client going away at any point is an abort: while
 * queued or loading it leaves the queue (a load others share goes on), while the policy counts
 * tokens the count is abandoned and the lease released, and while the runner works the upstream
 * request is destroyed so the runner stops within one evaluation chunk or one token. Every
 * request is measured once (metrics span), whatever way it ends.
 */
export function openaiRoutes(app: FastifyInstance, core: ServerCore): void {
  const metrics = metricsOf(core);

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

  const handle = async (
    path: string,
    req: FastifyRequest,
    reply: FastifyReply,
    body: Record<string, unknown> & { model: string; stream?: boolean | null | undefined },
    prepare?: (lease: Lease, signal: AbortSignal, span: RequestSpan) => Promise<PreparedBody>,
  ): Promise<void> => {
    const span = metrics.begin({ model: body.model, endpoint: path, stream: body.stream === true });
    const { signal, dispose } = requestSignal(reply.raw);
    let lease: Lease | undefined;
    let forwarded: PreparedBody;
    try {
      try {
        lease = await core.manager.acquire(body.model, { signal });
      } catch (err) {
        if (signal.aborted) {
          // Queued or loading: the manager says which (a load goes on for others).
          const stage = modelState(core, body.model) === 'loading' ? 'loading' : 'queued';
          span.end({ outcome: 'cancelled', stage, status: 0 });
        }
        throw err;
      }
      span.leased(lease.timing);
      forwarded = prepare ? await prepare(lease, signal, span) : { body: req.body };
      // The client may have left in the same tick the lease came: never start work for nobody.
      if (signal.aborted) throw signal.reason;
    } catch (err) {
      lease?.release();
      if (!span.ended)
        span.end(
          signal.aborted
            ? { outcome: 'cancelled', status: 0 }
            : {
                outcome: 'error',
                status: isHeadroomError(err) ? err.status : 500,
                error: isHeadroomError(err)
                  ? err.code
                  : isAbortError(err)
                    ? 'aborted'
                    : describeError(err).slice(0, 64),
              },
        );
      throw err;
    } finally {
      dispose();
    }
    reply.hijack();
    forwardToRunner({
      lease,
      path,
      body: forwarded.body,
      res: reply.raw,
      span,
      metrics,
      ...(forwarded.stripUsage ? { stripUsage: true } : {}),
      ...(forwarded.headers ? { headers: forwarded.headers } : {}),
      ...engineForwarding(core, lease),
    });
  };

  app.post('/v1/chat/completions', async (req, reply) => {
    const body = chatCompletionRequest.parse(req.body);
    await handle('/v1/chat/completions', req, reply, body, async (lease, signal, span) => {
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
    await handle('/v1/embeddings', req, reply, body);
  });

  app.post('/v1/completions', async (req, reply) => {
    const body = completionRequest.parse(req.body);
    await handle('/v1/completions', req, reply, body, async () =>
      withUsage(req.body as Record<string, unknown>, body.stream === true),
    );
  });
}

interface PreparedBody {
  body: Record<string, unknown> | unknown;
  stripUsage?: boolean;
  headers?: Record<string, string>;
}

/**
 * The body to forward: for streams, ask the runner for the usage event (token counts for the
 * metrics) and strip it again when the client did not ask for it.
 */
function withUsage(
  raw: Record<string, unknown>,
  stream: boolean,
): { body: Record<string, unknown>; stripUsage?: boolean; headers?: Record<string, string> } {
  const body = { ...raw };
  if (!stream) return { body };
  const so = body.stream_options as { include_usage?: boolean } | null | undefined;
  if (so?.include_usage === true) return { body };
  body.stream_options = { ...so, include_usage: true };
  return { body, stripUsage: true };
}

function modelState(core: ServerCore, name: string): string | undefined {
  try {
    return core.manager.status(name).state;
  } catch {
    return undefined;
  }
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

/** How to forward to the engine a lease's runner runs on (forward.ts ForwardOptions). */
function engineForwarding(
  core: ServerCore,
  lease: Lease,
): Pick<ForwardOptions, 'translateError' | 'closeAfterStream'> {
  const engine = core.engineOf?.(lease.config);
  if (!engine) return {};
  return {
    translateError: (status, body) => engine.translateError(status, body),
    closeAfterStream: !engine.capabilities.keepAliveAfterStream,
  };
}
