import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { ERROR_CODES } from '../lib/error-codes.js';
import { loadBody, logsQuery, pinBody, unloadBody } from './admin/routes.js';
import { EVENT_TYPES, historyQuery } from './admin/monitor-routes.js';
import { requestsQuery } from './metrics-routes.js';
import { ollamaChatBody, ollamaEmbedBody, ollamaGenerateBody } from './ollama/translate.js';
import { chatCompletionRequest, completionRequest, embeddingRequest } from './openai/schemas.js';

/**
 * The HTTP API as an OpenAPI 3.1 document, built from the zod schemas the routes validate with
 * (bodies and queries; z.toJSONSchema) and one line per route here for what zod does not say
 * (summary, answers). Served at GET /openapi.json and written to docs/openapi.json by
 * `npm run docs`. openapi.test.ts checks that every route the app registers is in it, and the
 * file is up to date.
 *
 * Built by hand rather than with @fastify/swagger: the routes validate with zod inside their
 * handlers, not with fastify route schemas, so swagger would need every route rewritten to
 * declare JSON schemas (and a dependency); this table is one module and no dependency.
 */

type Method = 'get' | 'post' | 'put';

interface RouteDoc {
  method: Method;
  /** OpenAPI path (`{name}` for a parameter). */
  path: string;
  tag: 'OpenAI' | 'Ollama' | 'Management' | 'Monitoring' | 'Config' | 'Dashboard';
  summary: string;
  body?: z.ZodType;
  /** A body given as YAML too (PUT /admin/config). */
  yamlBody?: boolean;
  query?: z.ZodObject;
  /** What a 200 carries: JSON (default), a stream of server-sent events, or text. */
  answer?: 'json' | 'sse' | 'text' | 'json-or-sse' | 'ndjson' | 'html';
  answerDescription: string;
}

const ROUTES: RouteDoc[] = [
  {
    method: 'get',
    path: '/health',
    tag: 'Management',
    summary: 'Liveness: {"status":"ok","version"}.',
    answerDescription: 'The daemon is up.',
  },
  {
    method: 'get',
    path: '/openapi.json',
    tag: 'Management',
    summary: 'This document.',
    answerDescription: 'The OpenAPI 3.1 document of the HTTP API.',
  },
  {
    method: 'get',
    path: '/v1/models',
    tag: 'OpenAI',
    summary:
      'The models headroom can serve (loaded or not), with state, context size when loaded, and source (headroom, ollama, lmstudio, huggingface).',
    answerDescription: 'OpenAI model list.',
  },
  {
    method: 'post',
    path: '/v1/chat/completions',
    tag: 'OpenAI',
    summary:
      'Chat completion; loads the model on first use. Extensions: context_overflow, ignore_eos, top_k, min_p.',
    body: chatCompletionRequest,
    answer: 'json-or-sse',
    answerDescription:
      'An OpenAI chat completion, or its chunks as server-sent events (stream: true).',
  },
  {
    method: 'post',
    path: '/v1/completions',
    tag: 'OpenAI',
    summary: 'Text completion; loads the model on first use.',
    body: completionRequest,
    answer: 'json-or-sse',
    answerDescription: 'An OpenAI completion, or its chunks as server-sent events (stream: true).',
  },
  {
    method: 'post',
    path: '/v1/embeddings',
    tag: 'OpenAI',
    summary: 'Embeddings (a model whose runner serves them: models.<name>.embeddings).',
    body: embeddingRequest,
    answerDescription: 'OpenAI embeddings.',
  },
  {
    method: 'get',
    path: '/api/version',
    tag: 'Ollama',
    summary: 'Ollama: the version.',
    answerDescription: '{"version"}',
  },
  {
    method: 'get',
    path: '/api/tags',
    tag: 'Ollama',
    summary: 'Ollama: the models headroom can serve.',
    answerDescription: "Ollama's model list.",
  },
  {
    method: 'get',
    path: '/api/ps',
    tag: 'Ollama',
    summary: 'Ollama: the models loaded now.',
    answerDescription: "Ollama's running-model list.",
  },
  {
    method: 'post',
    path: '/api/show',
    tag: 'Ollama',
    summary: 'Ollama: a model\'s details from its GGUF header ({"model"}).',
    answerDescription: "Ollama's model details.",
  },
  {
    method: 'post',
    path: '/api/chat',
    tag: 'Ollama',
    summary: 'Ollama: chat (options.num_ctx, keep_alive honoured).',
    body: ollamaChatBody,
    answer: 'ndjson',
    answerDescription: 'Newline-delimited JSON chunks, or one object with stream: false.',
  },
  {
    method: 'post',
    path: '/api/generate',
    tag: 'Ollama',
    summary: 'Ollama: generate.',
    body: ollamaGenerateBody,
    answer: 'ndjson',
    answerDescription: 'Newline-delimited JSON chunks, or one object with stream: false.',
  },
  {
    method: 'post',
    path: '/api/embed',
    tag: 'Ollama',
    summary: 'Ollama: embeddings.',
    body: ollamaEmbedBody,
    answerDescription: "Ollama's embeddings.",
  },
  {
    method: 'get',
    path: '/admin/models',
    tag: 'Management',
    summary:
      'Every model: state, config, requests in flight and queued, predicted / measured / peak memory, last use, expiry, pin, source, saved conversation states.',
    answerDescription: '{"models": [...]}',
  },
  {
    method: 'get',
    path: '/admin/models/{name}',
    tag: 'Management',
    summary: "One model's status (URL-encode names with / or :).",
    answerDescription: 'The model status.',
  },
  {
    method: 'post',
    path: '/admin/models/{name}/load',
    tag: 'Management',
    summary: 'Loads a model now, optionally with the config it must serve.',
    body: loadBody,
    answerDescription: 'The model status once loaded.',
  },
  {
    method: 'post',
    path: '/admin/models/{name}/unload',
    tag: 'Management',
    summary: 'Drains, then stops a model (force: stop at once).',
    body: unloadBody,
    answerDescription: 'The model status once stopped.',
  },
  {
    method: 'post',
    path: '/admin/models/{name}/pin',
    tag: 'Management',
    summary:
      'Pins (never unloaded by its TTL, evicted last) or unpins a model until the daemon stops.',
    body: pinBody,
    answerDescription: 'The model status.',
  },
  {
    method: 'get',
    path: '/admin/resources',
    tag: 'Management',
    summary:
      'The memory ledger: budget, reserved, measured, free; per model allocated, used, peak and buffers (model, context, working); the same per GPU.',
    answerDescription: 'The ledger.',
  },
  {
    method: 'get',
    path: '/admin/logs/{name}',
    tag: 'Management',
    summary: "The end of a model's runner log; with follow=true, then what the runner writes.",
    query: logsQuery,
    answer: 'text',
    answerDescription: 'The last `bytes` of the log.',
  },
  {
    method: 'get',
    path: '/admin/requests',
    tag: 'Monitoring',
    summary: 'The last requests: queue wait, load time, time to first token, tokens/s, outcome.',
    query: requestsQuery,
    answerDescription: '{"capacity", "requests": [...]}, newest first.',
  },
  {
    method: 'get',
    path: '/admin/resources/history',
    tag: 'Monitoring',
    summary: 'Memory samples, oldest first (503 monitor_disabled when the monitor is off).',
    query: historyQuery,
    answerDescription: '{"level", "samples": [...]}',
  },
  {
    method: 'get',
    path: '/admin/alerts',
    tag: 'Monitoring',
    summary:
      'Active and recent alerts (leaks, growth, pressure, OOM kills, heat), each with a recommendation.',
    answerDescription: '{"active": [...], "recent": [...]}',
  },
  {
    method: 'get',
    path: '/admin/events',
    tag: 'Monitoring',
    summary: `Live events as server-sent events: ${EVENT_TYPES.join(', ')} (?types= to choose).`,
    query: z.object({
      types: z
        .string()
        .optional()
        .describe(`Comma-separated event types among ${EVENT_TYPES.join(', ')}.`),
    }),
    answer: 'sse',
    answerDescription: 'A stream of events; the first is `hello` with the level and latest sample.',
  },
  {
    method: 'get',
    path: '/metrics',
    tag: 'Monitoring',
    summary: 'Prometheus metrics.',
    answer: 'text',
    answerDescription: 'Prometheus text exposition.',
  },
  {
    method: 'get',
    path: '/admin/config',
    tag: 'Config',
    summary: 'The config in force (sizes in bytes, durations in ms) and its file.',
    answerDescription: '{"file", "config"}',
  },
  {
    method: 'put',
    path: '/admin/config',
    tag: 'Config',
    summary:
      "Replaces the whole config (the config file's keys, as JSON or YAML): validated, written to the file, swapped in without dropping a request. An invalid config is refused (400 CONFIG_INVALID naming each key) and the one in force stays.",
    body: z
      .record(z.string(), z.unknown())
      .describe('The config file as an object (docs/config.schema.json).'),
    yamlBody: true,
    answerDescription:
      '{"applied", "changed", "restartNeeded", "removedModels", "models"}: what the reload did.',
  },
  {
    method: 'post',
    path: '/admin/config/reload',
    tag: 'Config',
    summary: 'Reads the config file again and applies it (as SIGHUP does).',
    answerDescription: 'What the reload did, as for PUT.',
  },
  {
    method: 'get',
    path: '/',
    tag: 'Dashboard',
    summary: 'The web dashboard (served without the API key; it asks for one when needed).',
    answer: 'html',
    answerDescription: 'The dashboard page.',
  },
  {
    method: 'get',
    path: '/ui/{file}',
    tag: 'Dashboard',
    summary: "The dashboard's scripts, stylesheet and uPlot.",
    answer: 'text',
    answerDescription: 'A file of the page.',
  },
];

function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _s, ...rest } = z.toJSONSchema(schema, {
    io: 'input',
    unrepresentable: 'any',
  }) as Record<string, unknown>;
  return rest;
}

const ERROR_RESPONSE = { $ref: '#/components/responses/Error' };

function operation(r: RouteDoc): Record<string, unknown> {
  const params: unknown[] = [];
  for (const m of r.path.matchAll(/\{(\w+)\}/g))
    params.push({ name: m[1], in: 'path', required: true, schema: { type: 'string' } });
  if (r.query) {
    const q = jsonSchema(r.query) as {
      properties?: Record<string, unknown>;
      required?: string[];
    };
    for (const [name, schema] of Object.entries(q.properties ?? {}))
      params.push({
        name,
        in: 'query',
        required: q.required?.includes(name) ?? false,
        schema,
      });
  }
  const answer = r.answer ?? 'json';
  const content: Record<string, unknown> = {};
  if (answer === 'json' || answer === 'json-or-sse') content['application/json'] = {};
  if (answer === 'sse' || answer === 'json-or-sse') content['text/event-stream'] = {};
  if (answer === 'ndjson') {
    content['application/x-ndjson'] = {};
    content['application/json'] = {};
  }
  if (answer === 'text') content['text/plain'] = {};
  if (answer === 'html') content['text/html'] = {};
  return {
    tags: [r.tag],
    summary: r.summary,
    ...(params.length > 0 ? { parameters: params } : {}),
    ...(r.body
      ? {
          requestBody: {
            required:
              r.method !== 'post' || !r.path.startsWith('/admin/models') || r.path.endsWith('/pin'),
            content: {
              'application/json': { schema: jsonSchema(r.body) },
              ...(r.yamlBody ? { 'application/yaml': { schema: jsonSchema(r.body) } } : {}),
            },
          },
        }
      : {}),
    responses: {
      '200': { description: r.answerDescription, content },
      '4XX': ERROR_RESPONSE,
      '5XX': ERROR_RESPONSE,
    },
  };
}

/** The OpenAPI 3.1 document of the HTTP API. */
export function openApiDocument(version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of ROUTES) (paths[r.path] ??= {})[r.method] = operation(r);
  const publicCodes = Object.entries(ERROR_CODES)
    .filter(([, info]) => info.public)
    .map(([code]) => code);
  return {
    openapi: '3.1.0',
    info: {
      title: 'headroom',
      version,
      description:
        'Memory-aware resource manager for local LLMs: an OpenAI-compatible API (/v1), an Ollama-compatible subset (/api), management (/admin) and Prometheus metrics. Errors come as the OpenAI error envelope (the /api routes: {"error": message}); docs/TROUBLESHOOTING.md explains every code.',
    },
    servers: [{ url: 'http://127.0.0.1:8642' }],
    tags: [
      { name: 'OpenAI', description: 'OpenAI-compatible: any OpenAI client works.' },
      { name: 'Ollama', description: 'The Ollama API subset Ollama clients use.' },
      { name: 'Management', description: 'Models, memory, logs.' },
      { name: 'Monitoring', description: 'Samples, alerts, events, requests, metrics.' },
      { name: 'Config', description: 'The config in force; reloads.' },
    ],
    paths,
    components: {
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['message', 'type', 'code'],
              properties: {
                message: { type: 'string', description: 'What happened and what to do.' },
                type: { type: 'string' },
                code: {
                  type: 'string',
                  description:
                    'A stable code (docs/TROUBLESHOOTING.md). Public codes are listed; an internal (UPPER_CASE) one may appear for a management call.',
                  examples: publicCodes,
                },
                param: { type: ['string', 'null'] },
              },
            },
          },
        },
      },
      responses: {
        Error: {
          description:
            'The OpenAI error envelope; 429 and 503 carry Retry-After when a retry may succeed.',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
        },
      },
    },
  };
}

/** The file docs/openapi.json: the document as 2-space JSON with a final newline. */
export function openApiText(version: string): string {
  return JSON.stringify(openApiDocument(version), null, 2) + '\n';
}

/** `METHOD /path` of every documented route, fastify's path syntax (`:name`). */
export function documentedRoutes(): string[] {
  return ROUTES.map((r) => `${r.method.toUpperCase()} ${r.path.replace(/\{(\w+)\}/g, ':$1')}`);
}

/** GET /openapi.json. */
export function openapiRoutes(app: FastifyInstance, version: string): void {
  let text: string | undefined;
  app.get('/openapi.json', async (_req, reply) => {
    text ??= openApiText(version);
    void reply.type('application/json; charset=utf-8');
    return text;
  });
}
