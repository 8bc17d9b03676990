import { Ollama } from 'ollama';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTinyChatDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { describeEachEngine } from '../helpers/engines.js';

/** The daemon's Ollama-compatible API, driven by the official `ollama` npm client. */
describeEachEngine('daemon with the official ollama client', (engine) => {
  let daemon: DaemonProcess;
  let client: Ollama;
  const MODEL = 'tiny-chat';

  beforeAll(async () => {
    daemon = await startTinyChatDaemon({ engines: engine.engines });
    client = new Ollama({ host: daemon.url });
  });

  afterAll(async () => {
    await daemon?.stop();
  });

  it('lists models with their details (tags) and reports its version', async () => {
    const tags = await client.list();
    const m = tags.models.find((x) => x.name === MODEL);
    expect(m).toBeDefined();
    expect(m!.size).toBeGreaterThan(1_000_000);
    expect(m!.details.family).toBe('llama');
    expect(m!.details.format).toBe('gguf');
    expect((await client.version()).version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('answers a plain chat, honouring num_ctx and num_predict', async () => {
    const res = await client.chat({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hello' }],
      stream: false,
      options: { num_ctx: 768, num_predict: 6, temperature: 0 },
    });
    expect(res.done).toBe(true);
    expect(res.message.role).toBe('assistant');
    expect(typeof res.message.content).toBe('string');
    expect(res.eval_count).toBeGreaterThan(0);
    expect(res.eval_count).toBeLessThanOrEqual(6);
    expect(res.prompt_eval_count).toBeGreaterThan(0);
    expect(res.total_duration).toBeGreaterThan(0);
    // The model was loaded for this request with a context of at least num_ctx.
    const ps = await client.ps();
    const loaded = ps.models.find((x) => x.name === MODEL) as unknown as { context_length: number };
    expect(loaded.context_length).toBeGreaterThanOrEqual(768);
  });

  it('streams a chat as NDJSON chunks ending with done and counts', async () => {
    const stream = await client.chat({
      model: MODEL,
      messages: [{ role: 'user', content: 'Tell me more' }],
      stream: true,
      options: { num_predict: 12, temperature: 0 },
    });
    let chunks = 0;
    let text = '';
    let last: { done: boolean; eval_count?: number; done_reason?: string } | undefined;
    for await (const part of stream) {
      chunks++;
      text += part.message.content;
      last = part;
    }
    expect(chunks).toBeGreaterThan(2);
    expect(text.length).toBeGreaterThan(0);
    expect(last!.done).toBe(true);
    expect(['stop', 'length']).toContain(last!.done_reason);
    expect(last!.eval_count).toBeGreaterThan(0);
  });

  it('generates (plain and streaming)', async () => {
    const res = await client.generate({
      model: MODEL,
      prompt: 'Once upon a time',
      stream: false,
      options: { num_predict: 5, temperature: 0 },
    });
    expect(res.done).toBe(true);
    expect(typeof res.response).toBe('string');
    expect(res.eval_count).toBeGreaterThan(0);
    let n = 0;
    for await (const part of await client.generate({
      model: MODEL,
      prompt: 'Once upon a time',
      stream: true,
      options: { num_predict: 5 },
    })) {
      n++;
      if (part.done) expect(part.eval_count).toBeGreaterThan(0);
    }
    expect(n).toBeGreaterThan(1);
  });

  it('shows a model, and lists it as running (ps) with an expiry', async () => {
    const show = await client.show({ model: MODEL });
    expect(show.details.family).toBe('llama');
    // Typed as a Map by the client; on the wire (and at run time) it is a plain object.
    expect((show.model_info as unknown as Record<string, unknown>)['general.architecture']).toBe(
      'llama',
    );
    const ps = await client.ps();
    const running = ps.models.find((x) => x.name === MODEL);
    expect(running).toBeDefined();
    expect(running!.size).toBeGreaterThan(0);
    expect(new Date(running!.expires_at).getTime()).toBeGreaterThan(Date.now());
  });

  it('answers a prompt longer than the context with 400 and both counts', async () => {
    const long = Array.from({ length: 400 }, (_, i) => `word${i} lorem ipsum`).join(' ');
    const res = await fetch(`${daemon.url}/api/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: MODEL,
        messages: [{ role: 'user', content: long }],
        stream: false,
        options: { num_predict: 4 },
      }),
    });
    const body = (await res.json()) as { error: string };
    expect(res.status, JSON.stringify(body)).toBe(400);
    expect(body.error).toMatch(/the prompt is \d+ tokens but this model's context holds \d+/);
  });

  it('unloads with keep_alive 0, and errors in Ollama shape', async () => {
    await client.generate({ model: MODEL, prompt: '', keep_alive: 0 });
    const ps = await client.ps();
    expect(ps.models.find((x) => x.name === MODEL)).toBeUndefined();
    await expect(
      client.chat({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    ).rejects.toMatchObject({
      status_code: 404,
      error: expect.stringMatching(/no-such-model.*Known models: .*tiny-chat/),
    });
    const bad = await fetch(`${daemon.url}/api/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [], keep_alive: 'soon' }),
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/keep_alive/);
  });
});
