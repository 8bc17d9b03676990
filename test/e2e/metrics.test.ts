import OpenAI from 'openai';
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTinyChatDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { describeEachEngine } from '../helpers/engines.js';

const run = promisify(execFile);
const promtool = await run('promtool', ['--version']).then(
  () => true,
  () => false,
);
if (!promtool)
  console.warn(
    'metrics.test: promtool not found (Debian package "prometheus"): skipping its check of /metrics',
  );

interface RequestRow {
  model: string;
  endpoint: string;
  outcome: string;
  stage: string;
  status: number;
  stream: boolean;
  queuedMs?: number;
  loadMs?: number;
  ttftMs?: number;
  promptTokens?: number;
  cachedTokens?: number;
  completionTokens?: number;
  generationTokensPerS?: number;
  droppedMessages?: number;
  error?: string;
}

async function requests(d: DaemonProcess): Promise<RequestRow[]> {
  const res = await fetch(`${d.url}/admin/requests`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { requests: RequestRow[] }).requests;
}

/** Words the forged tokenizer turns into many tokens: enough to overflow a small context. */
const filler = (n: number, seed: string): string =>
  Array.from({ length: n }, (_, i) => `${seed}${i % 97} lorem ipsum`).join(' ');

describeEachEngine(
  'request metrics, /metrics, context policy and prompt reuse through the daemon',
  (engine) => {
    let daemon: DaemonProcess;
    let client: OpenAI;
    const MODEL = 'tiny-chat';

    beforeAll(async () => {
      daemon = await startTinyChatDaemon({ engines: engine.engines });
      client = new OpenAI({ baseURL: `${daemon.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    });

    afterAll(async () => {
      await daemon?.stop();
    });

    it('records a streamed request (load, TTFT, tokens) without showing the client a usage chunk it did not ask for', async () => {
      const stream = await client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'Tell me a story' }],
        max_tokens: 12,
        stream: true,
        ignore_eos: true,
      } as OpenAI.ChatCompletionCreateParamsStreaming);
      let sawUsage = false;
      let chunks = 0;
      for await (const c of stream) {
        chunks++;
        if (c.usage) sawUsage = true;
      }
      expect(chunks).toBeGreaterThan(2);
      expect(sawUsage).toBe(false);
      const [r] = await requests(daemon);
      expect(r).toMatchObject({
        model: MODEL,
        endpoint: '/v1/chat/completions',
        outcome: 'done',
        stage: 'finished',
        status: 200,
        stream: true,
        completionTokens: 12,
      });
      expect(r!.loadMs).toBeGreaterThan(0);
      expect(r!.ttftMs).toBeGreaterThan(0);
      expect(r!.promptTokens).toBeGreaterThan(0);
      expect(r!.generationTokensPerS).toBeGreaterThan(0);
    });

    it('passes the usage chunk through when the client asks for it, and records non-streamed requests', async () => {
      const stream = await client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'Hi' }],
        max_tokens: 4,
        stream: true,
        stream_options: { include_usage: true },
      });
      let usage: OpenAI.CompletionUsage | undefined;
      for await (const c of stream) usage = c.usage ?? usage;
      expect(usage?.completion_tokens).toBeGreaterThan(0);
      const res = await client.completions.create({
        model: MODEL,
        prompt: 'Once upon a time',
        max_tokens: 5,
      });
      const [r] = await requests(daemon);
      expect(r).toMatchObject({ endpoint: '/v1/completions', outcome: 'done', stream: false });
      expect(r).toMatchObject({
        promptTokens: res.usage!.prompt_tokens,
        completionTokens: res.usage!.completion_tokens,
      });
      expect(r!.loadMs).toBeUndefined();
    });

    it('reports cached prompt tokens for a follow-up that extends an earlier conversation', async () => {
      const messages: OpenAI.ChatCompletionMessageParam[] = [
        { role: 'system', content: 'You are a terse assistant.' },
        { role: 'user', content: filler(20, 'q') },
      ];
      const first = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 6 });
      messages.push({ role: 'assistant', content: first.choices[0]!.message.content ?? '' });
      messages.push({ role: 'user', content: 'And then?' });
      const second = await client.chat.completions.create({
        model: MODEL,
        messages,
        max_tokens: 6,
      });
      const cached = second.usage?.prompt_tokens_details?.cached_tokens ?? 0;
      expect(cached).toBeGreaterThan(first.usage!.prompt_tokens / 2);
      const [r] = await requests(daemon);
      expect(r!.cachedTokens).toBe(cached);
    });

    it('context_overflow: error answers 400 with the counts; truncate_middle keeps the system prompt and the last turns', async () => {
      const messages = [
        { role: 'system', content: 'SYSTEM-PROMPT keep me' },
        { role: 'user', content: filler(120, 'a') },
        { role: 'assistant', content: filler(120, 'b') },
        { role: 'user', content: filler(120, 'c') },
        { role: 'assistant', content: filler(10, 'd') },
        { role: 'user', content: 'The last question?' },
      ];
      const post = (extra: Record<string, unknown>) =>
        fetch(`${daemon.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: MODEL, messages, max_tokens: 16, ...extra }),
        });
      const refused = await post({});
      expect(refused.status).toBe(400);
      const e = (
        (await refused.json()) as {
          error: { code: string; promptTokens: number; contextSize: number };
        }
      ).error;
      expect(e.code).toBe('context_length_exceeded');
      expect(e.promptTokens).toBeGreaterThan(1024);
      expect(e.contextSize).toBe(1024);
      expect((await requests(daemon))[0]).toMatchObject({
        outcome: 'error',
        status: 400,
        error: 'context_length_exceeded',
      });

      const ok = await post({ context_overflow: 'truncate_middle' });
      const body = (await ok.json()) as { usage: { prompt_tokens: number }; error?: unknown };
      expect(ok.status, JSON.stringify(body)).toBe(200);
      const dropped = Number(ok.headers.get('x-headroom-context-dropped-messages'));
      expect(dropped).toBeGreaterThanOrEqual(2);
      expect(body.usage.prompt_tokens + 16).toBeLessThanOrEqual(1024);
      expect((await requests(daemon))[0]).toMatchObject({
        outcome: 'done',
        droppedMessages: dropped,
      });

      const hopeless = await post({
        context_overflow: 'truncate_middle',
        messages: [{ role: 'user', content: filler(400, 'z') }],
      });
      expect(hopeless.status).toBe(400);
      expect(((await hopeless.json()) as { error: { code: string } }).error.code).toBe(
        'context_length_exceeded',
      );

      const bad = await post({ context_overflow: 'drop_everything' });
      expect(bad.status).toBe(400);
      expect(((await bad.json()) as { error: { param: string } }).error.param).toBe(
        'context_overflow',
      );
    });

    it('serves Prometheus metrics: request histograms, model memory, loads, queues', async () => {
      const res = await fetch(`${daemon.url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      const text = await res.text();
      expect(text).toMatch(
        /^headroom_requests_total\{model="tiny-chat",endpoint="\/v1\/chat\/completions",outcome="done"\} \d+/m,
      );
      expect(text).toMatch(
        /^headroom_request_ttft_seconds_bucket\{le="0.5",model="tiny-chat"\} \d+/m,
      );
      expect(text).toMatch(
        /^headroom_model_memory_bytes\{model="tiny-chat",kind="measured"\} \d+/m,
      );
      expect(text).toMatch(/^headroom_model_loads_total\{model="tiny-chat",result="done"\} 1$/m);
      expect(text).toMatch(/^headroom_model_queue_length\{model="tiny-chat"\} 0$/m);
      expect(text).toMatch(/^headroom_tokens_total\{model="tiny-chat",kind="cached"\} [1-9]/m);
      expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
    });

    it.skipIf(!promtool)('passes promtool check metrics', async () => {
      const text = await (await fetch(`${daemon.url}/metrics`)).text();
      const dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-promtool-'));
      const file = path.join(dir, 'metrics.txt');
      await writeFile(file, text);
      // promtool reads the exposition from stdin; a non-zero exit (lint problems) rejects.
      const { stdout, stderr } = await run('sh', ['-c', `promtool check metrics < "${file}"`]);
      expect(stdout + stderr).not.toMatch(/error|problem/i);
    });
  },
);
