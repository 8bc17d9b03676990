/**
 * The embedded runner process: one model in node-llama-cpp, served over HTTP on a loopback port it
 * picks itself. Started by the supervisor with an IPC channel and the RunnerConfig as JSON in
 * argv[2].
 *
 * Lifecycle: listen first (GET /health answers 503 while loading) and report `listening`; load the
 * model and report `ready` (or `error`, then exit 1). SIGTERM, SIGINT or the parent's IPC channel
 * closing (the parent died) → stop accepting, abort requests, free the model, exit 0.
 *
 * The completion endpoints are served by completion.ts (backpressure: decoding waits for each
 * token's event to be written).
 *
 * POST /trim (the daemon's reaction to medium memory pressure) frees caches an idle part of the
 * runner holds (Engine.trim) and answers with the RSS before and after; it never disturbs a request.
 *
 * node:http rather than fastify: a handful of routes, and every byte of overhead here is paid per token.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { z } from 'zod';
import { envelopeOf } from '../../lib/envelope.js';
import type { ErrorCode } from '../../lib/error-codes.js';
import { HeadroomError } from '../../lib/errors.js';
import { readProcessMemory } from '../../monitor/index.js';
import type { RunnerConfig, RunnerMessage, RunnerStats } from '../types.js';
import { chatCompletionBody, completionBody } from '../openai.js';
import { sendJson, serveCompletion } from './completion.js';
import { Engine } from './engine.js';
import { runnerConfigSchema, type TrimReport } from './index.js';

const MAX_BODY_BYTES = 16 * 1024 * 1024;

function send(message: RunnerMessage): void {
  process.send?.(message);
}

class BodyError extends HeadroomError {
  constructor(code: ErrorCode, message: string, status = 400) {
    super(code, message, { status });
  }
}

/** The body as JSON; an empty body is `{}` when `optional`, else a 400. */
async function readJson(req: IncomingMessage, optional = false): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES)
      throw new BodyError(
        'body_too_large',
        `the request body is larger than ${MAX_BODY_BYTES} bytes`,
        413,
      );
    chunks.push(chunk);
  }
  if (size === 0 && optional) return {};
  if (size === 0)
    throw new BodyError('invalid_json', 'the request body is empty; send a JSON object');
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch (err) {
    throw new BodyError(
      'invalid_json',
      `the request body is not valid JSON: ${(err as Error).message}`,
    );
  }
}

/** This process's resident set (VmRSS, as /stats reads it), bytes; Node's figure elsewhere. */
async function residentBytes(): Promise<number> {
  const mem = await readProcessMemory('self').catch(() => undefined);
  return mem?.rss ?? process.memoryUsage.rss();
}

const trimBody = z.object({ reason: z.string().max(1000).optional() });

function sendError(res: ServerResponse, err: unknown): void {
  const { status, body } = envelopeOf(err);
  if (!res.headersSent) sendJson(res, status, body);
  else if (!res.writableEnded) res.end(`data: ${JSON.stringify(body)}\n\n`);
}

const slotBody = z
  .object({
    slot: z.number().int().min(0).max(255),
    filename: z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,200}$/, 'a file name, not a path'),
  })
  .strict();

const promptBody = z.object({ path: z.string(), body: z.unknown() });

/** The tokens a completion request would evaluate, as completion.ts builds them. */
function promptTokens(engine: Engine, route: string, body: unknown): number[] | undefined {
  if (route === '/v1/chat/completions') {
    const chat = chatCompletionBody.safeParse(body);
    return chat.success ? engine.chatPrompt(chat.data.messages) : undefined;
  }
  if (route === '/v1/completions') {
    const text = completionBody.safeParse(body);
    if (!text.success) return undefined;
    const p = text.data.prompt;
    return engine.tokenize(typeof p === 'string' ? p : (p[0] ?? ''), { bos: true });
  }
  return undefined;
}

class Runner {
  readonly #server: http.Server;
  #engine: Engine | undefined;
  #stopping = false;
  /** The trim under way: a second POST /trim meanwhile gets its report. */
  #trimming: Promise<TrimReport> | undefined;
  readonly #config: RunnerConfig;
  readonly #modelName: string;
  readonly #stateDir: string | undefined;

  constructor(config: RunnerConfig, stateDir: string | undefined) {
    this.#config = config;
    this.#stateDir = stateDir;
    this.#modelName =
      config.modelPath
        .split('/')
        .pop()
        ?.replace(/\.gguf$/i, '') ?? 'model';
    this.#server = http.createServer((req, res) => void this.#route(req, res));
    this.#server.keepAliveTimeout = 5000;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve());
    });
    const address = this.#server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    send({ type: 'listening', port: address.port });
    console.log(`runner listening on 127.0.0.1:${address.port}, loading ${this.#config.modelPath}`);
    this.#engine = await Engine.create(this.#config);
    if (this.#stopping) return;
    console.log(
      `model loaded in ${Math.round(this.#engine.loadMs)} ms (context ${this.#engine.contextSize})`,
    );
    send({ type: 'ready', loadMs: this.#engine.loadMs });
  }

  /** A file in the runner's state directory (argv[3]); names only, never a path. */
  #stateFile(name: string): string {
    if (this.#stateDir === undefined)
      throw new HeadroomError(
        'invalid_request',
        'this runner was started without a state directory',
        {
          status: 400,
        },
      );
    return `${this.#stateDir}/${name}`;
  }

  async stop(reason: string): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    console.log(`stopping: ${reason}`);
    this.#server.close();
    this.#server.closeAllConnections();
    await this.#engine?.dispose();
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    try {
      if (req.method === 'GET' && path === '/health') {
        if (this.#engine && !this.#stopping) sendJson(res, 200, { status: 'ok' });
        else sendJson(res, 503, { status: this.#stopping ? 'stopping' : 'loading' });
        return;
      }
      const engine = this.#engine;
      if (!engine || this.#stopping)
        throw new HeadroomError('runner_not_ready', 'the model is still loading', { status: 503 });
      if (req.method === 'GET' && path === '/stats')
        return sendJson(res, 200, await this.#stats(engine));
      if (req.method === 'GET' && path === '/slots') return sendJson(res, 200, engine.slotViews());
      if (req.method !== 'POST')
        throw new HeadroomError('unknown_route', `no route ${req.method} ${path}`, { status: 404 });
      if (path === '/slots/save' || path === '/slots/restore') {
        const { slot, filename } = slotBody.parse(await readJson(req, true));
        const file = this.#stateFile(filename);
        return sendJson(
          res,
          200,
          path === '/slots/save'
            ? await engine.saveSlot(slot, file)
            : await engine.restoreSlot(slot, file),
        );
      }
      if (path === '/prompt-tokens') {
        const { path: route, body: request } = promptBody.parse(await readJson(req));
        return sendJson(res, 200, { tokens: promptTokens(engine, route, request) ?? null });
      }
      if (path === '/trim') {
        const { reason } = trimBody.parse(await readJson(req, true));
        return sendJson(res, 200, await this.#trim(engine, reason));
      }
      const body = await readJson(req);
      if (path === '/v1/chat/completions')
        return await serveCompletion(engine, res, 'chat', body, this.#modelName);
      if (path === '/v1/completions')
        return await serveCompletion(engine, res, 'text', body, this.#modelName);
      if (path === '/tokenize') {
        const { content, add_special } = z
          .object({ content: z.string(), add_special: z.boolean().optional() })
          .parse(body);
        return sendJson(res, 200, {
          tokens: engine.tokenize(content, { bos: add_special ?? false }),
        });
      }
      if (path === '/v1/embeddings') return await this.#embeddings(engine, req, res, body);
      if (path === '/detokenize') {
        const { tokens } = z
          .object({ tokens: z.array(z.number().int().nonnegative()).max(1_000_000) })
          .parse(body);
        return sendJson(res, 200, { content: engine.detokenize(tokens) });
      }
      throw new HeadroomError('unknown_route', `no route POST ${path}`, { status: 404 });
    } catch (err) {
      sendError(res, err);
    }
  }

  /** OpenAI's /v1/embeddings: `input` a string or an array of strings; float or base64 vectors. */
  async #embeddings(
    engine: Engine,
    req: IncomingMessage,
    res: ServerResponse,
    body: unknown,
  ): Promise<void> {
    const { input, model, encoding_format } = z
      .object({
        input: z.union([z.string(), z.array(z.string()).min(1).max(2048)]),
        model: z.string().optional(),
        encoding_format: z.enum(['float', 'base64']).optional(),
      })
      .parse(body);
    const controller = new AbortController();
    const onClose = (): void => controller.abort(new Error('client closed the connection'));
    req.socket.once('close', onClose);
    try {
      const inputs = typeof input === 'string' ? [input] : input;
      const { vectors, tokens } = await engine.embed(inputs, controller.signal);
      sendJson(res, 200, {
        object: 'list',
        model: model ?? 'headroom',
        data: vectors.map((v, index) => ({
          object: 'embedding',
          index,
          // base64: the vector's float32 values, little-endian, as OpenAI's clients decode them.
          embedding:
            encoding_format === 'base64'
              ? Buffer.from(new Float32Array(v).buffer).toString('base64')
              : v,
        })),
        usage: { prompt_tokens: tokens, total_tokens: tokens },
      });
    } finally {
      req.socket.off('close', onClose);
    }
  }

  /**
   * POST /trim: frees what the engine holds beyond serving the next request (Engine.trim) and
   * reports the resident set around it. Requests in flight are not disturbed. freedBytes is what
   * RSS dropped by, as measured (0 when it did not drop, e.g. when a request grew it meanwhile).
   */
  #trim(engine: Engine, reason: string | undefined): Promise<TrimReport> {
    this.#trimming ??= (async () => {
      const rssBefore = await residentBytes();
      const { released, forgottenTokens, busySlots } = await engine.trim();
      const rssAfter = await residentBytes();
      const freedBytes = Math.max(0, rssBefore - rssAfter);
      const mib = (b: number): string => (b / 1048576).toFixed(1);
      console.log(
        `trimmed${reason ? ` (${reason})` : ''}: ${released.join(', ') || 'nothing'}; ` +
          `RSS ${mib(rssBefore)} -> ${mib(rssAfter)} MiB`,
      );
      return { rssBefore, rssAfter, freedBytes, released, forgottenTokens, busySlots };
    })().finally(() => {
      this.#trimming = undefined;
    });
    return this.#trimming;
  }

  async #stats(engine: Engine): Promise<RunnerStats> {
    const mem = await readProcessMemory(process.pid);
    return {
      rss: mem?.rss ?? 0,
      rssAnon: mem?.rssAnon ?? 0,
      peakRss: mem?.peak ?? 0,
      modelBytes: engine.modelBytes,
      contextBytes: engine.contextBytes,
      contextSize: engine.contextSize,
      kvCacheKeyType: this.#config.kvCacheKeyType,
      kvCacheValueType: this.#config.kvCacheValueType,
      tokensInUse: engine.tokensInUse,
      parallel: this.#config.parallel,
      ...engine.counters,
    };
  }
}

async function main(): Promise<void> {
  let config: RunnerConfig;
  try {
    config = runnerConfigSchema.parse(JSON.parse(process.argv[2] ?? '')) as RunnerConfig;
  } catch (err) {
    const message = `invalid runner config: ${(err as Error).message}`;
    console.error(message);
    send({ type: 'error', code: 'RUNNER_BAD_CONFIG', message });
    process.exit(2);
  }
  const runner = new Runner(config, process.argv[3] || undefined);
  const shutdown = (reason: string): void => {
    void runner.stop(reason).finally(() => process.exit(0));
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('disconnect', () => shutdown('parent disconnected'));
  try {
    await runner.start();
  } catch (err) {
    const message = (err as Error).message ?? String(err);
    console.error(`load failed: ${message}`);
    send({ type: 'error', code: 'RUNNER_LOAD_FAILED', message });
    await runner.stop('load failed').catch(() => undefined);
    process.exit(1);
  }
}

void main();
