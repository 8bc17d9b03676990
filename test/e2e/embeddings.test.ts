import path from 'node:path';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTinyChatDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { describeEachEngine } from '../helpers/engines.js';
import { tinyChatModel } from '../helpers/models.js';

/** Embeddings through the daemon, with both official clients, on a forged model. */
describeEachEngine('embeddings', (engine) => {
  let daemon: DaemonProcess;
  const CHAT = 'tiny-chat';
  // The same file configured for embeddings: llama-server serves them only from a runner
  // started for them (capabilities.embeddings 'dedicated-runner'); the embedded runner serves
  // them from any runner, so there the chat model itself is asked.
  const EMBED_ONLY = 'tiny-embed';
  const MODEL = engine.capabilities.embeddings === 'always' ? CHAT : EMBED_ONLY;

  beforeAll(async () => {
    const file = await tinyChatModel();
    daemon = await startTinyChatDaemon({
      engines: engine.engines,
      models: { [EMBED_ONLY]: { path: path.resolve(file), embeddings: true } },
    });
  });

  afterAll(async () => {
    await daemon?.stop();
  });

  it('answers OpenAI embeddings: one vector per input, deterministic, with usage', async () => {
    const client = new OpenAI({ baseURL: `${daemon.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const res = await client.embeddings.create({
      model: MODEL,
      input: ['the lighthouse keeper', 'a storm at sea', 'the lighthouse keeper'],
      encoding_format: 'float',
    });
    expect(res.data).toHaveLength(3);
    const [a, b, c] = res.data.map((d) => d.embedding);
    expect(a!.length).toBeGreaterThan(16);
    expect(a!.every(Number.isFinite)).toBe(true);
    expect(c).toEqual(a);
    expect(b).not.toEqual(a);
    expect(res.usage.prompt_tokens).toBeGreaterThan(3);
  });

  it('answers Ollama /api/embed with the same vectors', async () => {
    const openai = new OpenAI({ baseURL: `${daemon.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const ollama = new Ollama({ host: daemon.url });
    const o = await ollama.embed({ model: MODEL, input: 'a storm at sea' });
    expect(o.embeddings).toHaveLength(1);
    const ref = await openai.embeddings.create({ model: MODEL, input: 'a storm at sea' });
    expect(o.embeddings[0]).toEqual(ref.data[0]!.embedding);
  });

  it('rejects bad input with 400 naming the field', async () => {
    const res = await fetch(`${daemon.url}/v1/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, input: [] }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { param: string } }).error.param).toBe('input');
  });

  it.runIf(engine.capabilities.embeddings === 'dedicated-runner')(
    'answers embeddings asked of a chat runner with 400 embeddings_unsupported saying how to get them, on both APIs',
    async () => {
      const res = await fetch(`${daemon.url}/v1/embeddings`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: CHAT, input: 'a storm at sea' }),
      });
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(body.error.code).toBe('embeddings_unsupported');
      expect(body.error.message).toContain('embeddings: true');

      const ollama = await fetch(`${daemon.url}/api/embed`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: CHAT, input: 'a storm at sea' }),
      });
      const o = (await ollama.json()) as { error: string };
      expect(ollama.status, JSON.stringify(o)).toBe(400);
      expect(o.error).toContain('embeddings: true');
    },
  );

  it('serves chat from the model configured for embeddings too', async () => {
    // llama-server started with --embeddings switches embeddings on per batch (tools/server:
    // llama_set_embeddings(ctx, slot.need_embd())), so its runner answers chat as well.
    const client = new OpenAI({ baseURL: `${daemon.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const res = await client.chat.completions.create({
      model: EMBED_ONLY,
      messages: [{ role: 'user', content: 'Hello' }],
      max_tokens: 4,
    });
    expect(res.model).toBe(EMBED_ONLY);
    expect(res.choices[0]!.message.content).toBeTypeOf('string');
  });
});
