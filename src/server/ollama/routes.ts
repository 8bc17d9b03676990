import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type http from 'node:http';
import { stat } from 'node:fs/promises';
import { readModelSpec, type ModelSpec } from '../../gguf/index.js';
import { envelopeOf } from '../../lib/envelope.js';
import { HeadroomError } from '../../lib/errors.js';
import { requestSignal } from '../../lib/request-signal.js';
import type { Lease } from '../../scheduler/model-manager.js';
import type { ServerCore } from '../core.js';
import { metricsOf } from '../metrics-routes.js';
import { postToRunner } from '../runner-request.js';
import {
  chatRunnerBody,
  generateRunnerRequest,
  keepAliveMs,
  ollamaChatBody,
  ollamaEmbedBody,
  ollamaGenerateBody,
  parseRunnerEvent,
  splitEvents,
} from './translate.js';

/**
 * Ollama-compatible routes: /api/chat and /api/generate (NDJSON streams, or one object with
 * `stream: false`), /api/tags, /api/ps, /api/show, /api/version. Errors are Ollama's shape,
 * `{"error": "message"}`, with the same status the OpenAI routes give.
 *
 * A chat or generate request is translated to the runner's OpenAI stream and each event is
 * rewritten as one NDJSON line as it arrives: nothing is buffered beyond one event, a client that
 * reads slowly pauses the runner's stream (backpressure), and a client that leaves destroys the
 * runner request, which stops its work.
 */
export function ollamaRoutes(app: FastifyInstance, core: ServerCore): void {
  void app.register(async (api) => {
    api.setErrorHandler((err, _req, reply) => {
      const { status, body, retryAfter } = envelopeOf(err);
      if (retryAfter !== undefined) void reply.header('retry-after', String(retryAfter));
      void reply.status(status).send({ error: body.error.message });
    });
    const details = detailsCache();

    api.get('/api/version', async () => ({ version: core.version }));

    api.get('/api/tags', async () => ({
      models: await Promise.all(
        core.manager.list().map(async (m) => {
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
      ),
    }));

    api.get('/api/ps', async () => ({
      models: await Promise.all(
        core.manager
          .list()
          .filter((m) => m.state === 'ready' || m.state === 'draining')
          .map(async (m) => {
            const d = await details(m.path);
            return {
              name: m.name,
              model: m.name,
              size: m.measured ?? m.predicted ?? d.size,
              digest: '',
              details: d.details,
              expires_at: new Date(
                m.expiresAt ?? Date.now() + 100 * 365 * 86_400_000,
              ).toISOString(),
              size_vram: 0,
              context_length: m.config?.contextSize ?? 0,
            };
          }),
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
      const started = process.hrtime.bigint();
      const { signal, dispose } = requestSignal(reply.raw);
      try {
        const lease = await core.manager.acquire(b.model, {
          signal,
          ...(keep !== undefined ? { keepAliveMs: keep } : {}),
        });
        try {
          const res = await fetch(new URL('/v1/embeddings', lease.url), {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ input: b.input, model: b.model }),
            signal: AbortSignal.any([signal, lease.signal]),
          });
          const out = (await res.json()) as {
            data?: Array<{ embedding: number[] }>;
            usage?: { prompt_tokens: number };
            error?: { message: string };
          };
          // The engine's codes first, as on /v1/embeddings (e.g. embeddings_unsupported).
          const translated = res.ok
            ? undefined
            : core.engineOf?.(lease.config)?.translateError(res.status, out);
          if (translated)
            throw new HeadroomError(translated.code, translated.message, {
              status: translated.status,
              ...(translated.details ? { details: translated.details } : {}),
            });
          if (!res.ok || !out.data)
            throw new HeadroomError(
              'embedding_failed',
              out.error?.message ?? `runner ${res.status}`,
              {
                status: res.status >= 400 ? res.status : 502,
              },
            );
          return {
            model: b.model,
            embeddings: out.data.map((d) => d.embedding),
            total_duration: Number(process.hrtime.bigint() - started),
            load_duration: Math.round((lease.timing.loadMs ?? 0) * 1e6),
            prompt_eval_count: out.usage?.prompt_tokens ?? 0,
          };
        } finally {
          lease.release();
        }
      } finally {
        dispose();
      }
    });

    api.post('/api/chat', async (req, reply) => {
      const b = ollamaChatBody.parse(req.body);
      const keep = parseKeepAlive(b.keep_alive);
      if (b.messages.length === 0) return loadOnly(core, b.model, keep, reply, 'message');
      await relay(core, req, reply, {
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
      await relay(core, req, reply, {
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

function badRequest(param: string, message: string): HeadroomError {
  return new HeadroomError('invalid_request_error', message, { status: 400, details: { param } });
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

/** Acquires the model, streams the runner's answer to the client as Ollama NDJSON (or one object). */
async function relay(
  core: ServerCore,
  _req: FastifyRequest,
  reply: FastifyReply,
  o: RelayOptions,
): Promise<void> {
  const metrics = metricsOf(core);
  const span = metrics.begin({ model: o.model, endpoint: o.endpoint, stream: o.stream });
  const started = process.hrtime.bigint();
  const { signal, dispose } = requestSignal(reply.raw);
  let lease: Lease;
  try {
    lease = await core.manager.acquire(o.model, {
      signal,
      ...(o.numCtx !== undefined ? { contextSize: o.numCtx } : {}),
      ...(o.keep !== undefined ? { keepAliveMs: o.keep } : {}),
    });
  } catch (err) {
    span.end(
      signal.aborted
        ? { outcome: 'cancelled', status: 0 }
        : {
            outcome: 'error',
            status: envelopeOf(err).status,
            error: envelopeOf(err).body.error.code ?? 'error',
          },
    );
    throw err;
  } finally {
    dispose();
  }
  span.leased(lease.timing);
  reply.hijack();
  const res = reply.raw;
  const loadNs = BigInt(Math.round((lease.timing.loadMs ?? 0) * 1e6));
  const payload = Buffer.from(JSON.stringify(o.body));
  let ended = false;
  let firstTokenAt: bigint | undefined;
  let text = '';
  let finish = 'stop';
  let usage: { prompt_tokens: number; completion_tokens: number } | undefined;

  const line = (extra: Record<string, unknown>): string =>
    `${JSON.stringify({ model: o.model, created_at: new Date().toISOString(), ...extra })}\n`;
  const piece = (t: string): Record<string, unknown> =>
    o.chat ? { message: { role: 'assistant', content: t } } : { response: t };

  const end = (outcome: 'done' | 'cancelled' | 'error', status: number, error?: string): void => {
    if (ended) return;
    ended = true;
    lease.release();
    lease.signal.removeEventListener('abort', onCancelled);
    res.off('close', onClose);
    res.off('drain', onDrain);
    if (firstTokenAt !== undefined) span.firstByte(Number(firstTokenAt / 1_000_000n));
    span.end({
      outcome,
      status,
      ...(error ? { error } : {}),
      ...(usage
        ? {
            usage: { promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens },
          }
        : {}),
    });
  };
  const fail = (status: number, message: string, code: string): void => {
    if (!res.headersSent && !res.destroyed) {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: message }));
    } else if (!res.writableEnded && !res.destroyed) {
      res.end(JSON.stringify({ error: message }) + '\n');
    }
    end('error', status, code);
  };

  let upstreamRes: http.IncomingMessage | undefined;
  function onClose(): void {
    if (!res.writableFinished) {
      upstream.destroy();
      end('cancelled', 0);
    }
  }
  function onDrain(): void {
    upstreamRes?.resume();
  }
  function onCancelled(): void {
    const { status, body } = envelopeOf(lease.signal.reason);
    upstream.destroy();
    fail(status, body.error.message, 'request_cancelled');
  }
  res.once('close', onClose);
  res.on('drain', onDrain);
  lease.signal.addEventListener('abort', onCancelled, { once: true });

  function onResponse(up: http.IncomingMessage): void {
    upstreamRes = up;
    up.setEncoding('utf8');
    if ((up.statusCode ?? 500) >= 400) {
      let errBody = '';
      up.on('data', (d: string) => (errBody += d.length < 65536 ? d : ''));
      up.once('end', () => {
        const status = up.statusCode ?? 500;
        let parsed: unknown;
        try {
          parsed = JSON.parse(errBody);
        } catch {
          // not JSON: the generic message
        }
        // The engine's codes first, as on the OpenAI routes (e.g. context_length_exceeded).
        const t =
          parsed === undefined
            ? undefined
            : core.engineOf?.(lease.config)?.translateError(status, parsed);
        if (t) {
          fail(t.status, t.message, t.code);
          return;
        }
        const message = (parsed as { error?: { message?: unknown } } | undefined)?.error?.message;
        fail(
          status,
          typeof message === 'string' ? message : `the runner answered ${status}`,
          `http_${status}`,
        );
      });
      return;
    }
    if (o.stream) {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      if (typeof res.socket?.setNoDelay === 'function') res.socket.setNoDelay(true);
    }
    let buf = '';
    up.on('data', (chunk: string) => {
      buf += chunk;
      const { events, rest } = splitEvents(buf);
      buf = rest;
      let out = '';
      for (const ev of events) {
        const c = parseRunnerEvent(ev);
        if (!c) continue;
        if (c.error) {
          upstream.destroy();
          fail(502, c.error.message, c.error.code ?? 'runner_failed');
          return;
        }
        if (c.usage) usage = c.usage;
        if (c.finishReason) finish = c.finishReason;
        if (c.text) {
          firstTokenAt ??= process.hrtime.bigint();
          if (o.stream) out += line({ ...piece(c.text), done: false });
          else text += c.text;
        }
      }
      if (out && !res.write(out)) up.pause();
    });
    up.once('end', () => {
      if (ended) return;
      const now = process.hrtime.bigint();
      const total = now - started;
      const evalStart = firstTokenAt ?? now;
      const final = {
        ...piece(o.stream ? '' : text),
        done: true,
        done_reason: finish === 'length' ? 'length' : 'stop',
        total_duration: Number(total),
        load_duration: Number(loadNs),
        prompt_eval_count: usage?.prompt_tokens ?? 0,
        prompt_eval_duration: Number(
          evalStart - started - loadNs > 0n ? evalStart - started - loadNs : 0n,
        ),
        eval_count: usage?.completion_tokens ?? 0,
        eval_duration: Number(now - evalStart),
      };
      if (!o.stream) res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        o.stream
          ? line(final)
          : JSON.stringify({ model: o.model, created_at: new Date().toISOString(), ...final }),
      );
      end('done', 200);
    });
    const broken = (): void => {
      if (!ended)
        fail(
          502,
          `the runner for "${o.model}" stopped in the middle of the answer; retry`,
          'runner_failed',
        );
    };
    up.once('aborted', broken);
    up.on('error', broken);
  }
  const keepsStreams = core.engineOf?.(lease.config)?.capabilities.keepAliveAfterStream ?? true;
  const upstream = postToRunner({
    url: new URL(o.path, lease.url),
    payload,
    // Ollama answers are streamed from the runner's stream unless asked otherwise.
    ...(keepsStreams ? {} : { headers: { connection: 'close' } }),
    onResponse,
    onError: () => {
      if (!ended)
        fail(502, `the runner for "${o.model}" could not be reached; retry`, 'runner_unreachable');
    },
  });
}

interface FileDetails {
  size: number;
  mtimeMs: number;
  spec: ModelSpec;
  details: Record<string, unknown>;
}

/** Per-file facts for /api/tags, /api/ps and /api/show, read once per file version. */
function detailsCache(): (path: string) => Promise<FileDetails> {
  const cache = new Map<string, FileDetails>();
  return async (path) => {
    const st = await stat(path);
    const hit = cache.get(path);
    if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return hit;
    const spec = await readModelSpec(path);
    const d: FileDetails = {
      size: st.size,
      mtimeMs: st.mtimeMs,
      spec,
      details: {
        format: 'gguf',
        family: spec.architecture,
        families: [spec.architecture],
        parameter_size: formatParams(spec.parameterCount),
        quantization_level: spec.fileType?.replace(/^MOSTLY_/, '') ?? 'unknown',
      },
    };
    if (cache.size > 256) cache.clear();
    cache.set(path, d);
    return d;
  };
}

function formatParams(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(1)}B` : `${(n / 1e6).toFixed(1)}M`;
}
