import type { FastifyInstance, FastifyReply } from 'fastify';
import { HeadroomError } from '../../lib/errors.js';
import type { Lease } from '../../scheduler/model-manager.js';
import type { ModelFile, ServerCore } from '../core.js';
import { toEnvelope } from '../errors.js';
import { relay } from '../relay.js';
import { ollamaAnswer, ollamaEmbedAnswer, ollamaError } from './answer.js';
import {
  chatRunnerBody,
  generateRunnerRequest,
  keepAliveMs,
  ollamaChatBody,
  ollamaEmbedBody,
  ollamaGenerateBody,
} from './translate.js';

/**
 * Ollama-compatible routes: /api/chat and /api/generate (NDJSON streams, or one object with
 * `stream: false`), /api/tags, /api/ps, /api/show, /api/version. Errors are Ollama's shape,
 * `{"error": "message"}`, with the same status the OpenAI routes give.
 *
 * A chat, generate or embed request takes the same path as an OpenAI one (relay.ts →
 * forwardToRunner: backpressure, cancellation, lease, metrics span, the engine's error codes and
 * connection rules); only its answer is rewritten (answer.ts): each runner event becomes one NDJSON
 * line as it arrives, nothing is buffered beyond one event.
 */
export function ollamaRoutes(app: FastifyInstance, core: ServerCore): void {
  void app.register(async (api) => {
    api.setErrorHandler((err, _req, reply) => {
      const { status, body, retryAfter } = toEnvelope(err);
      if (retryAfter !== undefined) void reply.header('retry-after', String(retryAfter));
      void reply.status(status).type('application/json').send(ollamaError(body));
    });
    // Ollama reads every body as JSON whatever its Content-Type (its curl examples send none,
    // so curl labels them form data); the same parser, with its prototype-poisoning guard.
    api.removeAllContentTypeParsers();
    api.addContentTypeParser(
      '*',
      { parseAs: 'string' },
      api.getDefaultJsonParser('error', 'error'),
    );
    const details = async (path: string) => {
      const f = await core.modelFile(path);
      return { ...f, details: detailsOf(f.spec) };
    };

    api.get('/api/version', async () => ({ version: core.version }));

    // A model whose file cannot be read (corrupt, removed) is left out of the list rather than
    // failing it: one broken file never hides the good ones.
    api.get('/api/tags', async () => ({
      models: await readable(core.manager.list(), async (m) => {
        const d = await details(m.path);
        return {
          name: m.name,
          model: m.name,
          modified_at: new Date(d.mtimeMs).toISOString(),
          size: d.size,
          digest: '',
          details: d.details,
        };
      }),
    }));

    api.get('/api/ps', async () => ({
      models: await readable(
        core.manager.list().filter((m) => m.state === 'ready' || m.state === 'draining'),
        async (m) => {
          const d = await details(m.path);
          return {
            name: m.name,
            model: m.name,
            size: m.measured ?? m.predicted ?? d.size,
            digest: '',
            details: d.details,
            expires_at: new Date(m.expiresAt ?? Date.now() + 100 * 365 * 86_400_000).toISOString(),
            size_vram: 0,
            context_length: m.config?.contextSize ?? 0,
          };
        },
      ),
    }));

    api.post('/api/show', async (req) => {
      const b = (req.body ?? {}) as { model?: unknown; name?: unknown };
      const name = typeof b.model === 'string' ? b.model : typeof b.name === 'string' ? b.name : '';
      if (!name) throw badRequest('model', 'the body must name a model: {"model": "name"}');
      const m = core.manager.status(name);
      const d = await details(m.path);
      const s = d.spec;
      return {
        modelfile: `FROM ${m.path}\n`,
        parameters: '',
        template: '',
        details: d.details,
        model_info: {
          'general.architecture': s.architecture,
          'general.parameter_count': s.parameterCount,
          [`${s.architecture}.context_length`]: s.contextLength,
          [`${s.architecture}.embedding_length`]: s.embeddingSize,
          [`${s.architecture}.block_count`]: s.layers,
          [`${s.architecture}.attention.head_count`]: s.headCount,
          [`${s.architecture}.attention.head_count_kv`]: s.headCountKv,
        },
        capabilities: ['completion'],
        modified_at: new Date(d.mtimeMs).toISOString(),
      };
    });

    api.post('/api/embed', async (req, reply) => {
      const b = ollamaEmbedBody.parse(req.body);
      const keep = parseKeepAlive(b.keep_alive);
      const startedNs = process.hrtime.bigint();
      await relay(core, reply, {
        model: b.model,
        endpoint: '/api/embed',
        stream: false,
        path: '/v1/embeddings',
        ...(keep !== undefined ? { acquire: { keepAliveMs: keep } } : {}),
        prepare: async () => ({ body: { input: b.input, model: b.model } }),
        transform: (lease) =>
          ollamaEmbedAnswer({ model: b.model, startedNs, loadNs: loadNsOf(lease) }),
      });
    });

    api.post('/api/chat', async (req, reply) => {
      const b = ollamaChatBody.parse(req.body);
      const keep = parseKeepAlive(b.keep_alive);
      if (b.messages.length === 0) return loadOnly(core, b.model, keep, reply, 'message');
      await relayAnswer(core, reply, {
        model: b.model,
        endpoint: '/api/chat',
        stream: b.stream,
        numCtx: b.options?.num_ctx,
        keep,
        path: '/v1/chat/completions',
        body: chatRunnerBody(b),
        chat: true,
      });
    });

    api.post('/api/generate', async (req, reply) => {
      const b = ollamaGenerateBody.parse(req.body);
      const keep = parseKeepAlive(b.keep_alive);
      if (!b.prompt) return loadOnly(core, b.model, keep, reply, 'response');
      const { path, body } = generateRunnerRequest(b);
      await relayAnswer(core, reply, {
        model: b.model,
        endpoint: '/api/generate',
        stream: b.stream,
        numCtx: b.options?.num_ctx,
        keep,
        path,
        body,
        chat: false,
      });
    });
  });
}

/** `fn` over every item, keeping the results of those that did not throw, in order. */
async function readable<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const settled = await Promise.allSettled(items.map(fn));
  return settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
}

function badRequest(param: string, message: string): HeadroomError {
  return new HeadroomError('invalid_request', message, { status: 400, details: { param } });
}

function parseKeepAlive(v: number | string | undefined): number | null | undefined {
  try {
    return keepAliveMs(v);
  } catch (err) {
    throw badRequest('keep_alive', (err as Error).message);
  }
}

/**
 * A chat with no messages or a generate with no prompt: load the model (or, with keep_alive 0,
 * unload it), as Ollama does, and answer with one final object.
 */
async function loadOnly(
  core: ServerCore,
  model: string,
  keep: number | null | undefined,
  reply: FastifyReply,
  field: 'message' | 'response',
): Promise<unknown> {
  let reason = 'load';
  if (keep === 0) {
    await core.manager.unload(model, { reason: 'keep_alive 0' });
    reason = 'unload';
  } else {
    await core.manager.load(model, {
      ...(keep !== undefined ? { keepAliveMs: keep } : {}),
    });
  }
  void reply.header('content-type', 'application/json');
  return {
    model,
    created_at: new Date().toISOString(),
    ...(field === 'message' ? { message: { role: 'assistant', content: '' } } : { response: '' }),
    done: true,
    done_reason: reason,
  };
}

interface RelayOptions {
  model: string;
  endpoint: string;
  stream: boolean;
  numCtx: number | undefined;
  keep: number | null | undefined;
  path: string;
  body: Record<string, unknown>;
  chat: boolean;
}

/**
 * A chat or generate request through the one relay (relay.ts, forward.ts), its answer rewritten
 * as Ollama's NDJSON stream or object (answer.ts).
 */
async function relayAnswer(core: ServerCore, reply: FastifyReply, o: RelayOptions): Promise<void> {
  const startedNs = process.hrtime.bigint();
  await relay(core, reply, {
    model: o.model,
    endpoint: o.endpoint,
    stream: o.stream,
    path: o.path,
    acquire: {
      ...(o.numCtx !== undefined ? { contextSize: o.numCtx } : {}),
      ...(o.keep !== undefined ? { keepAliveMs: o.keep } : {}),
    },
    prepare: async () => ({ body: o.body }),
    transform: (lease) =>
      ollamaAnswer({
        model: o.model,
        chat: o.chat,
        stream: o.stream,
        startedNs,
        loadNs: loadNsOf(lease),
      }),
  });
}

/** How long the request waited for its model's load, in ns. */
function loadNsOf(lease: Lease): bigint {
  return BigInt(Math.round((lease.timing.loadMs ?? 0) * 1e6));
}

/** Ollama's `details` of a model file. */
function detailsOf(spec: ModelFile['spec']): Record<string, unknown> {
  return {
    format: 'gguf',
    family: spec.architecture,
    families: [spec.architecture],
    parameter_size: formatParams(spec.parameterCount),
    quantization_level: spec.fileType?.replace(/^MOSTLY_/, '') ?? 'unknown',
  };
}

function formatParams(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(1)}B` : `${(n / 1e6).toFixed(1)}M`;
}
