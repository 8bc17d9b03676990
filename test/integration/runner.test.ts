import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RunnerConfig } from '../../src/engines/types.js';
import { sleep } from '../../src/lib/abort.js';
import { tinyChatModel } from '../helpers/models.js';
import {
  post,
  runnerConfig,
  startRunner,
  stats,
  type StartedRunner as Started,
} from '../helpers/runner.js';

/** The embedded runner as a real child process on a real socket (no supervisor, no daemon). */

function configFor(modelPath: string, over: Partial<RunnerConfig> = {}): RunnerConfig {
  return runnerConfig(modelPath, { parallel: 2, ...over });
}

async function waitFor<T>(fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  return vi.waitFor(
    async () => {
      const v = await fn();
      if (v === undefined) throw new Error('condition not met in time');
      return v;
    },
    { timeout: ms, interval: 20 },
  );
}

describe('embedded runner', () => {
  let runner: Started;

  beforeAll(async () => {
    runner = await startRunner(configFor(await tinyChatModel()));
  });

  afterAll(async () => {
    if (runner.proc.exitCode === null) {
      runner.proc.kill('SIGTERM');
      await once(runner.proc, 'exit');
    }
  });

  it('reports listening, then ready with its load time, and answers /health', async () => {
    expect(runner.messages.map((m) => m.type)).toEqual(['listening', 'ready']);
    const res = await fetch(`${runner.url}/health`);
    expect(res.status).toBe(200);
  });

  it('answers a plain chat completion in the OpenAI shape with usage', async () => {
    const res = await post(runner.url, '/v1/chat/completions', {
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 8,
      temperature: 0,
      ignore_eos: true,
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      object: string;
      choices: { message: { role: string; content: string }; finish_reason: string }[];
      usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
    };
    expect(body.object).toBe('chat.completion');
    expect(body.choices[0]!.message.role).toBe('assistant');
    expect(body.choices[0]!.finish_reason).toBe('length');
    expect(body.usage.completion_tokens).toBe(8);
    expect(body.usage.prompt_tokens).toBeGreaterThan(3);
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + 8);
  });

  it('streams SSE chunks with a final usage chunk and [DONE]', async () => {
    const res = await post(runner.url, '/v1/chat/completions', {
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 12,
      temperature: 0,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const text = await res.text();
    const events = text
      .split('\n\n')
      .filter(Boolean)
      .map((e) => e.replace(/^data: /, ''));
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map(
      (e) =>
        JSON.parse(e) as {
          choices: { delta?: { content?: string }; finish_reason: string | null }[];
          usage?: { completion_tokens: number };
        },
    );
    expect(chunks.at(-1)!.usage!.completion_tokens).toBe(12);
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('length');
  });

  it('is deterministic at temperature 0 and reuses an evaluated prefix', async () => {
    const body = {
      prompt: 'the quick brown fox jumps over the lazy dog',
      max_tokens: 6,
      temperature: 0,
      ignore_eos: true,
    };
    const a = (await (await post(runner.url, '/v1/completions', body)).json()) as {
      choices: { text: string }[];
      usage: { prompt_tokens_details: { cached_tokens: number } };
    };
    const b = (await (await post(runner.url, '/v1/completions', body)).json()) as typeof a;
    expect(b.choices[0]!.text).toBe(a.choices[0]!.text);
    expect(b.usage.prompt_tokens_details.cached_tokens).toBeGreaterThan(0);
  });

  it('tokenizes and detokenizes', async () => {
    const { tokens } = (await (
      await post(runner.url, '/tokenize', { content: 'hello world' })
    ).json()) as { tokens: number[] };
    expect(tokens.length).toBeGreaterThan(0);
    const { content } = (await (await post(runner.url, '/detokenize', { tokens })).json()) as {
      content: string;
    };
    expect(content.trim()).toBe('hello world');
  });

  it('reports memory, context and slot counters at /stats', async () => {
    const s = await stats(runner.url);
    expect(s.rss).toBeGreaterThan(s.modelBytes);
    expect(s.peakRss).toBeGreaterThanOrEqual(s.rss);
    expect(s.contextSize).toBe(2048);
    expect(s.contextBytes).toBeGreaterThan(0);
    expect(s.kvCacheKeyType).toBe('f16');
    expect(s.busy).toBe(0);
  });

  it('stops decoding when the client disconnects', async () => {
    const controller = new AbortController();
    const res = await post(
      runner.url,
      '/v1/chat/completions',
      {
        messages: [{ role: 'user', content: 'go' }],
        max_tokens: 1500,
        temperature: 0,
        ignore_eos: true,
        stream: true,
      },
      controller.signal,
    );
    const reader = res.body!.getReader();
    for (let i = 0; i < 3; i++) await reader.read();
    controller.abort();
    const idle = await waitFor(async () => {
      const s = await stats(runner.url);
      return s.busy === 0 ? s : undefined;
    });
    await sleep(200);
    const later = await stats(runner.url);
    expect(later.generated).toBe(idle.generated);
    expect(later.busy).toBe(0);
  });

  it('stops prompt evaluation when the client disconnects', async () => {
    const words = Array.from({ length: 1800 }, (_, i) => `w${i % 97}`);
    // Trim the prompt until it fits the 2048-token context with room to spare.
    const fit = async (n: number): Promise<{ long: string; promptTokens: number }> => {
      const long = words.slice(0, n).join(' ');
      const { tokens } = (await (
        await post(runner.url, '/tokenize', { content: long })
      ).json()) as { tokens: number[] };
      return tokens.length < 1900
        ? { long, promptTokens: tokens.length }
        : fit(Math.floor(n * 0.9));
    };
    const { long, promptTokens } = await fit(words.length);
    const before = await stats(runner.url);
    const controller = new AbortController();
    const pending = post(
      runner.url,
      '/v1/completions',
      { prompt: long, max_tokens: 4, temperature: 0 },
      controller.signal,
    ).catch(() => undefined);
    await waitFor(async () => ((await stats(runner.url)).busy > 0 ? true : undefined));
    controller.abort();
    await pending;
    const idle = await waitFor(async () => {
      const s = await stats(runner.url);
      return s.busy === 0 ? s : undefined;
    });
    // No token was generated for the aborted request, and its prompt was not evaluated to the end.
    expect(idle.generated).toBe(before.generated);
    expect(idle.tokensInUse).toBeLessThan(promptTokens);
  });

  it('rejects a prompt longer than the context with 400 and both counts', async () => {
    const long = Array.from({ length: 3000 }, (_, i) => `w${i % 89}`).join(' ');
    const res = await post(runner.url, '/v1/completions', { prompt: long, max_tokens: 4 });
    expect(res.status).toBe(400);
    const body = (await res.json()) as {
      error: { code: string; contextSize: number; promptTokens: number };
    };
    expect(body.error.code).toBe('context_length_exceeded');
    expect(body.error.contextSize).toBe(2048);
    expect(body.error.promptTokens).toBeGreaterThan(2048);
  });

  it('rejects malformed JSON and invalid parameters with 400 envelopes', async () => {
    const bad = await fetch(`${runner.url}/v1/chat/completions`, { method: 'POST', body: '{nope' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('invalid_json');
    const param = await post(runner.url, '/v1/chat/completions', {
      messages: [{ role: 'user', content: 'x' }],
      temperature: 9,
    });
    expect(param.status).toBe(400);
    expect(((await param.json()) as { error: { param: string } }).error.param).toBe('temperature');
  });

  it('exits 0 on SIGTERM', async () => {
    const r = await startRunner(configFor(await tinyChatModel(), { parallel: 1 }));
    r.proc.kill('SIGTERM');
    const [code] = (await once(r.proc, 'exit')) as [number | null];
    expect(code).toBe(0);
  });

  it('exits when its parent channel closes', async () => {
    const r = await startRunner(configFor(await tinyChatModel(), { parallel: 1 }));
    r.proc.disconnect();
    const [code] = (await once(r.proc, 'exit')) as [number | null];
    expect(code).toBe(0);
  });

  it('reports a load error over IPC and exits non-zero for a file that is not a model', async () => {
    await expect(startRunner(configFor('/etc/hostname'))).rejects.toThrow(/./);
  });
});
