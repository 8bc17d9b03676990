import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { loopbackServers } from '../../../test/helpers/http-servers.js';
import type { EngineCapabilities } from '../../engines/engine.js';
import { silentLogger } from '../../lib/logger.js';
import type { Lease } from '../../scheduler/model-manager.js';
import { createApp } from '../app.js';
import type { ServerCore } from '../core.js';

// The Ollama routes in-process (inject) over a real upstream "runner" server that speaks the
// runner's OpenAI protocol: what the runner saw, what the client got, and that the lease ended.

const runner = loopbackServers();

interface Seen {
  path: string;
  connection: string | undefined;
  body: Record<string, unknown>;
}

/** An upstream that records each request and answers with `answer`. */
async function recordingRunner(
  answer: (res: http.ServerResponse, seen: Seen) => void,
): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const url = await runner((req, res) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      const s = {
        path: req.url ?? '',
        connection: req.headers.connection,
        body: JSON.parse(raw) as Record<string, unknown>,
      };
      seen.push(s);
      answer(res, s);
    });
  });
  return { url, seen };
}

const llamaServerLike: EngineCapabilities = {
  embeddings: 'dedicated-runner',
  tokenize: true,
  trim: true,
  cancelsPromptEvaluation: false,
  backpressure: false,
  keepAliveAfterStream: false,
};

function appFor(url: string, engine?: Parameters<NonNullable<ServerCore['engineOf']>>[0] | true) {
  const leases: Array<{ released: number; acquired: Record<string, unknown> }> = [];
  const core: ServerCore = {
    version: 'test',
    startedAt: Date.now(),
    manager: {
      acquire: async (model: string, opts: Record<string, unknown> = {}) => {
        const record = { released: 0, acquired: { ...opts, signal: undefined } };
        leases.push(record);
        const lease: Lease = {
          model,
          timing: { waitedMs: 0 },
          url,
          config: {} as Lease['config'],
          signal: new AbortController().signal,
          release: () => {
            record.released++;
          },
          gone: () => Promise.resolve(false),
        };
        return lease;
      },
      list: () => [],
      status: () => {
        throw new Error('not used');
      },
      load: async () => {
        throw new Error('not used');
      },
      pin: () => {
        throw new Error('not used');
      },
      unload: async () => {
        throw new Error('not used');
      },
      names: () => ['m'],
      resources: () => ({ ledger: { budget: 0, used: 0 } }),
    } as unknown as ServerCore['manager'],
    processMemory: async () => undefined,
    logTail: async () => '',
    modelFile: async () => {
      throw new Error('this test reads no model files');
    },
    ...(engine
      ? {
          engineOf: () => ({
            capabilities: llamaServerLike,
            translateError: (status: number, body: unknown) =>
              (body as { error?: { type?: string } }).error?.type === 'exceed_context_size_error'
                ? {
                    status: 400,
                    code: 'context_length_exceeded',
                    message: 'the prompt is too long',
                  }
                : undefined,
          }),
        }
      : {}),
  };
  return { app: createApp(core, { log: silentLogger(), bodyLimit: 1 << 20 }), leases };
}

const sse = (events: unknown[]): string =>
  events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('') + 'data: [DONE]\n\n';

const tokens = (...texts: string[]): unknown[] => [
  ...texts.map((t) => ({ choices: [{ delta: { content: t }, finish_reason: null }] })),
  { choices: [{ delta: {}, finish_reason: 'stop' }] },
  { choices: [], usage: { prompt_tokens: 7, completion_tokens: texts.length } },
];

describe('Ollama routes through the one forwarder', () => {
  it('streams a chat as NDJSON lines and a final line with counts, then ends the lease', async () => {
    const up = await recordingRunner((res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(sse(tokens('Hel', 'lo')));
    });
    const { app, leases } = appFor(up.url);
    const res = await app.inject({
      method: 'POST',
      url: '/api/chat',
      payload: {
        model: 'm',
        messages: [{ role: 'user', content: 'hi' }],
        options: { num_ctx: 2048 },
        keep_alive: '5m',
      },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/x-ndjson');
    const lines = res.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => (l.message as { content: string }).content)).toEqual(['Hel', 'lo', '']);
    expect(lines.at(-1)).toMatchObject({ done: true, eval_count: 2, prompt_eval_count: 7 });
    expect(up.seen[0]).toMatchObject({
      path: '/v1/chat/completions',
      body: { stream: true, stream_options: { include_usage: true } },
    });
    expect(leases).toEqual([
      { released: 1, acquired: { contextSize: 2048, keepAliveMs: 300_000, signal: undefined } },
    ]);
  });

  it('answers a generate with stream false as one object', async () => {
    const up = await recordingRunner((res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(sse(tokens('Once', ' upon')));
    });
    const { app, leases } = appFor(up.url);
    const res = await app.inject({
      method: 'POST',
      url: '/api/generate',
      payload: { model: 'm', prompt: 'tell', stream: false },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.json()).toMatchObject({
      model: 'm',
      response: 'Once upon',
      done: true,
      eval_count: 2,
    });
    expect(leases[0]!.released).toBe(1);
  });

  it("asks a llama-server-like engine for a new connection per stream and renders its errors in headroom's codes", async () => {
    const up = await recordingRunner((res, seen) => {
      if (seen.body.messages && JSON.stringify(seen.body.messages).includes('long')) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { type: 'exceed_context_size_error', message: 'n_ctx' } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(sse(tokens('ok')));
    });
    const { app, leases } = appFor(up.url, true);
    const ok = await app.inject({
      method: 'POST',
      url: '/api/chat',
      payload: { model: 'm', messages: [{ role: 'user', content: 'hi' }] },
    });
    expect(ok.statusCode).toBe(200);
    expect(up.seen[0]!.connection).toBe('close');
    const long = await app.inject({
      method: 'POST',
      url: '/api/chat',
      payload: { model: 'm', messages: [{ role: 'user', content: 'long' }] },
    });
    expect(long.statusCode).toBe(400);
    expect(long.json()).toEqual({ error: 'the prompt is too long' });
    expect(leases.map((l) => l.released)).toEqual([1, 1]);
  });

  it("passes a runner's own error message on, with its status", async () => {
    const up = await recordingRunner((res) => {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'still loading', code: 'runner_not_ready' } }));
    });
    const { app } = appFor(up.url);
    const res = await app.inject({
      method: 'POST',
      url: '/api/generate',
      payload: { model: 'm', prompt: 'x' },
    });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toEqual({ error: 'still loading' });
  });

  it('ends a stream with an error line when the runner reports an error after tokens', async () => {
    const up = await recordingRunner((res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(
        sse([
          { choices: [{ delta: { content: 'a' }, finish_reason: null }] },
          { error: { message: 'decode failed', code: 'runner_failed' } },
        ]),
      );
    });
    const { app } = appFor(up.url);
    const res = await app.inject({
      method: 'POST',
      url: '/api/chat',
      payload: { model: 'm', messages: [{ role: 'user', content: 'hi' }] },
    });
    const lines = res.body.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[1]!)).toEqual({ error: 'decode failed' });
  });

  it('answers 502 in Ollama shape when the runner breaks before a non-streamed answer is sent', async () => {
    const up = await recordingRunner((res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // The headers and half an event reach the daemon, then the connection breaks.
      res.write(sse(tokens('a')).slice(0, 20), () => res.socket?.destroy());
    });
    const { app, leases } = appFor(up.url);
    const res = await app.inject({
      method: 'POST',
      url: '/api/chat',
      payload: { model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: false },
    });
    expect(res.statusCode).toBe(502);
    expect(res.json().error).toMatch(/stopped in the middle of the answer/);
    expect(leases[0]!.released).toBe(1);
  });

  it('embeds through the runner and answers in /api/embed shape', async () => {
    const up = await recordingRunner((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          data: [{ embedding: [0.5, -0.5] }],
          usage: { prompt_tokens: 3, total_tokens: 3 },
        }),
      );
    });
    const { app, leases } = appFor(up.url, true);
    const res = await app.inject({
      method: 'POST',
      url: '/api/embed',
      payload: { model: 'm', input: 'a storm' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      model: 'm',
      embeddings: [[0.5, -0.5]],
      prompt_eval_count: 3,
    });
    expect(up.seen[0]).toMatchObject({
      path: '/v1/embeddings',
      body: { input: 'a storm', model: 'm' },
    });
    // Not a stream: the connection may be kept.
    expect(up.seen[0]!.connection).not.toBe('close');
    expect(leases[0]!.released).toBe(1);
  });
});
