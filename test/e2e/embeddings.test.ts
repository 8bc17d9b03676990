import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTinyChatDaemon, type DaemonProcess } from '../helpers/daemon.js';

/** Embeddings through the daemon, with both official clients, on a forged model. */
describe('embeddings', () => {
  let daemon: DaemonProcess;
  const MODEL = 'tiny-chat';

  beforeAll(async () => {
    daemon = await startTinyChatDaemon();
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
});
