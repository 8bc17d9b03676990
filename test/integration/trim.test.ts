/**
 * POST /trim of the embedded runner (the daemon's reaction to medium memory pressure), on a real
 * runner process with a forged model: it disposes the embedding context and forgets idle slots'
 * cached prompt tokens, reports the RSS it measured around that, and never disturbs a request.
 * The runner is started as the supervisor starts it (embeddedSpawnSpec, its environment included:
 * the malloc setting there is what lets a disposed context's memory leave the process).
 */
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { embeddedEngine } from '../../src/engines/embedded/index.js';
import type { RunnerConfig } from '../../src/engines/types.js';
import { type TrimReport } from '../../src/engines/embedded/index.js';
import { tinyChatModel } from '../helpers/models.js';
import {
  post,
  runnerConfig,
  startRunner,
  stats,
  type StartedRunner as Started,
} from '../helpers/runner.js';

async function trim(url: string): Promise<TrimReport> {
  const res = await post(url, '/trim', { reason: 'test' });
  expect(res.status).toBe(200);
  return (await res.json()) as TrimReport;
}

/** Waits until the runner's log shows `re`: its stdout may arrive after its HTTP answer. */
async function outputMatches(r: Started, re: RegExp): Promise<void> {
  await vi.waitFor(() => expect(r.output()).toMatch(re), { timeout: 10_000 });
}

async function embed(url: string, input: string): Promise<number[]> {
  const res = await post(url, '/v1/embeddings', { input });
  expect(res.status).toBe(200);
  return ((await res.json()) as { data: { embedding: number[] }[] }).data[0]!.embedding;
}

async function cachedTokens(url: string, prompt: string): Promise<number> {
  const res = await post(url, '/v1/completions', {
    prompt,
    max_tokens: 4,
    temperature: 0,
    ignore_eos: true,
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as {
    usage: { prompt_tokens_details: { cached_tokens: number } };
  };
  return body.usage.prompt_tokens_details.cached_tokens;
}

describe('runner POST /trim', () => {
  let runner: Started;

  let config: RunnerConfig;
  beforeAll(async () => {
    // One thread: with two, llama.cpp's spinning thread barrier makes decoding crawl (1–2 tok/s
    // measured) whenever another process wants the cores, as the test's own client does.
    config = runnerConfig(await tinyChatModel(), { contextSize: 2048, parallel: 2, threads: 1 });
    runner = await startRunner(config);
  });

  afterAll(async () => {
    if (runner.proc.exitCode === null) {
      runner.proc.kill('SIGTERM');
      await once(runner.proc, 'exit');
    }
  });

  it('disposes the embedding context after an embeddings call and reports the memory it freed', async () => {
    await embed(runner.url, 'a sentence to embed '.repeat(50));
    const report = await trim(runner.url);
    expect(report.released).toContain('embedding-context');
    expect(report.rssAfter).toBeLessThanOrEqual(report.rssBefore);
    expect(report.freedBytes).toBe(report.rssBefore - report.rssAfter);
    // Measured 41–46 MiB on this model in every run; more than a few MiB is the context's KV
    // cache and compute buffers leaving the process.
    expect(report.freedBytes).toBeGreaterThan(4 * 1024 * 1024);
    await outputMatches(runner, /trimmed \(test\): .*embedding-context/);
    // Nothing left to free: a second trim releases nothing.
    expect((await trim(runner.url)).released).toEqual([]);
  });

  it('answers embeddings again after a trim, with the same vectors', async () => {
    const before = await embed(runner.url, 'the same words');
    expect((await trim(runner.url)).released).toContain('embedding-context');
    expect(await embed(runner.url, 'the same words')).toEqual(before);
  });

  it('forgets idle slots’ cached prompt tokens: prefix reuse starts over, then works again', async () => {
    const prompt = 'the quick brown fox jumps over the lazy dog and runs far away';
    await cachedTokens(runner.url, prompt);
    expect(await cachedTokens(runner.url, prompt)).toBeGreaterThan(0);
    const report = await trim(runner.url);
    expect(report.released).toContain('prompt-cache');
    expect(report.forgottenTokens).toBeGreaterThan(0);
    expect(await cachedTokens(runner.url, prompt)).toBe(0);
    expect(await cachedTokens(runner.url, prompt)).toBeGreaterThan(0);
  });

  it('does not disturb a streaming chat it runs beside', async () => {
    const res = await post(runner.url, '/v1/chat/completions', {
      messages: [{ role: 'user', content: 'tell me a long story' }],
      max_tokens: 800,
      temperature: 0,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
    });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    // Trim once the stream is under way (its first generated tokens have arrived)...
    while ((text.match(/"content"/g) ?? []).length < 4) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    expect(text).not.toContain('[DONE]');
    // ...and the other slot holds a finished request's tokens (it is the only free slot).
    await cachedTokens(runner.url, 'a short request on the other slot');
    const report = await trim(runner.url);
    const after = await stats(runner.url);
    // The streaming slot was busy and left alone; the idle one was cleared.
    expect(report.busySlots).toBe(1);
    expect(report.released).toContain('prompt-cache');
    expect(report.forgottenTokens).toBeGreaterThan(0);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    const events = text
      .split('\n\n')
      .filter(Boolean)
      .map((e) => e.replace(/^data: /, ''));
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map(
      (e) =>
        JSON.parse(e) as {
          choices: { finish_reason: string | null }[];
          usage?: { prompt_tokens: number; completion_tokens: number };
        },
    );
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('length');
    expect(chunks.at(-1)!.usage!.completion_tokens).toBe(800);
    // Right after the trim the stream's slot still held its prompt and the 4+ tokens it had sent:
    // a cleared slot would have started again from nothing.
    expect(after.tokensInUse).toBeGreaterThanOrEqual(chunks.at(-1)!.usage!.prompt_tokens + 4);
  });

  it('rejects a body that is not JSON with a 400 envelope', async () => {
    const res = await fetch(`${runner.url}/trim`, { method: 'POST', body: '{nope' });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_json');
  });

  it("daemon side: the embedded engine's trim (the scheduler's trim effect) resolves with what the runner freed, rejects when it cannot", async () => {
    await embed(runner.url, 'warm the embedding context again');
    const report = await embeddedEngine.trim(
      runner.url,
      config,
      'pressure medium',
      AbortSignal.timeout(5000),
    );
    expect(report.freedBytes).toBeGreaterThan(4 * 1024 * 1024);
    await outputMatches(runner, /trimmed \(pressure medium\)/);
    // Nothing listens on port 1: connection refused (the scheduler's shell counts it as 0).
    await expect(
      embeddedEngine.trim(
        'http://127.0.0.1:1',
        config,
        'pressure medium',
        AbortSignal.timeout(5000),
      ),
    ).rejects.toThrow();
  });
});
