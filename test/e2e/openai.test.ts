import OpenAI from 'openai';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { childPids, isAlive, startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { tinyChatModel } from '../helpers/models.js';

interface AdminModel {
  name: string;
  state: string;
  pid?: number;
  url?: string;
  inFlight: number;
  config?: { contextSize: number };
  memory?: { measured: { rss: number } };
}

async function adminModel(d: DaemonProcess, name: string): Promise<AdminModel> {
  const res = await fetch(`${d.url}/admin/models`);
  const body = (await res.json()) as { models: AdminModel[] };
  const m = body.models.find((x) => x.name === name);
  if (!m) throw new Error(`model ${name} not listed`);
  return m;
}

interface RunnerStatsBody {
  busy: number;
  generated: number;
}

async function runnerStats(url: string): Promise<RunnerStatsBody> {
  return (await (await fetch(`${url}/stats`)).json()) as RunnerStatsBody;
}

async function waitFor<T>(
  fn: () => Promise<T | undefined>,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('daemon with the official openai client', () => {
  let daemon: DaemonProcess;
  let client: OpenAI;
  const MODEL = 'tiny-chat';

  beforeAll(async () => {
    const file = await tinyChatModel();
    daemon = await startDaemon({
      modelDirs: [path.dirname(file)],
      demoModel: false,
      runner: { contextSize: 1024, threads: 2 },
    });
    client = new OpenAI({ baseURL: `${daemon.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });

  afterAll(async () => {
    await daemon?.stop();
  });

  it('lists the models it found', async () => {
    const list = await client.models.list();
    const ids = list.data.map((m) => m.id);
    expect(ids).toContain(MODEL);
  });

  it('answers a plain chat completion, loading the model on first use', async () => {
    const res = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hello there' }],
      max_tokens: 8,
    });
    expect(res.object).toBe('chat.completion');
    expect(res.choices[0]!.message.role).toBe('assistant');
    expect(typeof res.choices[0]!.message.content).toBe('string');
    expect(res.usage!.completion_tokens).toBeGreaterThan(0);
    expect(res.usage!.prompt_tokens).toBeGreaterThan(0);
    const m = await adminModel(daemon, MODEL);
    expect(m.state).toBe('ready');
    expect(m.config!.contextSize).toBe(1024);
    expect(m.memory!.measured.rss).toBeGreaterThan(10 * 1024 * 1024);
  });

  it('streams a chat completion', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Tell me a story' }],
      max_tokens: 16,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let chunks = 0;
    let finish: string | null | undefined;
    let usage;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    expect(chunks).toBeGreaterThan(2);
    expect(text.length).toBeGreaterThan(0);
    expect(['stop', 'length']).toContain(finish);
    expect(usage?.completion_tokens).toBeGreaterThan(0);
  });

  it('stops decoding at the runner when the client aborts a stream, then serves the next request', async () => {
    const controller = new AbortController();
    // ignore_eos is headroom's extension: the tiny model may otherwise end on its own within 3 chunks.
    const body = {
      model: MODEL,
      messages: [{ role: 'user' as const, content: 'Go on forever' }],
      max_tokens: 900,
      stream: true as const,
      ignore_eos: true,
    };
    const stream = await client.chat.completions.create(body, { signal: controller.signal });
    let chunks = 0;
    // The SDK's stream iterator ends quietly (no throw) when its signal aborts.
    try {
      for await (const _ of stream) {
        if (++chunks === 3) controller.abort();
      }
    } catch (err) {
      expect((err as Error).name).toMatch(/Abort/);
    }
    expect(chunks).toBeGreaterThanOrEqual(3);
    expect(chunks).toBeLessThan(50);
    const m = await adminModel(daemon, MODEL);
    // The runner must go idle, and its generated-token counter must stop moving.
    const idle = await waitFor(async () => {
      const s = await runnerStats(m.url!);
      return s.busy === 0 ? s : undefined;
    }, 'the runner to go idle');
    await new Promise((r) => setTimeout(r, 300));
    const later = await runnerStats(m.url!);
    expect(later.generated).toBe(idle.generated);
    expect(later.busy).toBe(0);
    // Far fewer than the 900 tokens asked for were generated by the aborted request.
    const after = await adminModel(daemon, MODEL);
    expect(after.inFlight).toBe(0);

    const res = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Again' }],
      max_tokens: 4,
    });
    expect(res.choices[0]!.message.content).toBeTypeOf('string');
  });

  it('ends the stream cleanly when the runner is SIGKILLed mid-stream, marks it failed, and reloads on the next request', async () => {
    const first = await adminModel(daemon, MODEL);
    expect(first.state).toBe('ready');
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'A long answer please' }],
      max_tokens: 900,
      stream: true,
    });
    let chunks = 0;
    let ended: 'error' | 'end' = 'end';
    try {
      for await (const _ of stream) {
        if (++chunks === 3) process.kill(first.pid!, 'SIGKILL');
      }
    } catch {
      ended = 'error';
    }
    expect(chunks).toBeGreaterThanOrEqual(3);
    expect(['error', 'end']).toContain(ended);
    const failed = await waitFor(async () => {
      const m = await adminModel(daemon, MODEL);
      return m.state === 'failed' ? m : undefined;
    }, 'state failed');
    expect(failed.inFlight).toBe(0);

    const res = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Back?' }],
      max_tokens: 4,
    });
    expect(res.choices[0]!.message.content).toBeTypeOf('string');
    const again = await adminModel(daemon, MODEL);
    expect(again.state).toBe('ready');
    expect(again.pid).not.toBe(first.pid);
  });

  it('renders errors as OpenAI envelopes', async () => {
    const post = (
      p: string,
      body: string,
      headers: Record<string, string> = { 'content-type': 'application/json' },
    ) => fetch(`${daemon.url}${p}`, { method: 'POST', headers, body });

    const unknown = await post(
      '/v1/chat/completions',
      JSON.stringify({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
    );
    expect(unknown.status).toBe(404);
    const u = (await unknown.json()) as {
      error: { message: string; code: string; known: string[] };
    };
    expect(u.error.code).toBe('model_not_found');
    expect(u.error.message).toContain(MODEL);

    const badJson = await post('/v1/chat/completions', '{"model": ');
    expect(badJson.status).toBe(400);
    expect(((await badJson.json()) as { error: { message: string } }).error.message).toMatch(
      /JSON/,
    );

    const badParam = await post(
      '/v1/chat/completions',
      JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x' }], temperature: 7 }),
    );
    expect(badParam.status).toBe(400);
    expect(((await badParam.json()) as { error: { param: string } }).error.param).toBe(
      'temperature',
    );

    const noMessages = await post('/v1/chat/completions', JSON.stringify({ model: MODEL }));
    expect(noMessages.status).toBe(400);
    expect(((await noMessages.json()) as { error: { param: string } }).error.param).toBe(
      'messages',
    );

    // Announce a 5 MiB body and send only its start: the daemon must answer 413 from the length
    // alone (racing a full upload against the server closing the socket gives EPIPE instead).
    const huge = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(new URL('/v1/completions', daemon.url), {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': 5 * 1024 * 1024 },
      });
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body });
          req.destroy();
        });
      });
      req.on('error', reject);
      req.write(`{"model":"${MODEL}","prompt":"xxxx`);
    });
    expect(huge.status).toBe(413);
    expect((JSON.parse(huge.body) as { error: { code: string } }).error.code).toBe(
      'body_too_large',
    );

    const route = await fetch(`${daemon.url}/v1/nothing-here`);
    expect(route.status).toBe(404);
    expect(((await route.json()) as { error: { code: string } }).error.code).toBe('unknown_route');
  });

  it('leaves no runner process behind after SIGTERM', async () => {
    await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 2,
    });
    const m = await adminModel(daemon, MODEL);
    const children = await childPids(daemon.proc.pid!);
    expect(children).toContain(m.pid);
    const code = await daemon.stop('SIGTERM');
    expect(code).toBe(0);
    await waitFor(
      async () => (children.every((p) => !isAlive(p)) ? true : undefined),
      'runners to exit',
      5000,
    );
  });
});
