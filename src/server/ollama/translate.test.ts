import { describe, expect, it } from 'vitest';
import {
  chatRunnerBody,
  generateRunnerRequest,
  keepAliveMs,
  ollamaChatBody,
  ollamaGenerateBody,
  parseRunnerEvent,
  splitEvents,
} from './translate.js';

describe('Ollama translation', () => {
  it('reads keep_alive as Ollama does: seconds, durations, 0 and negative', () => {
    expect(keepAliveMs(undefined)).toBeUndefined();
    expect(keepAliveMs(30)).toBe(30_000);
    expect(keepAliveMs(0)).toBe(0);
    expect(keepAliveMs(-1)).toBeNull();
    expect(keepAliveMs('5m')).toBe(300_000);
    expect(keepAliveMs('1h')).toBe(3_600_000);
    expect(keepAliveMs('250ms')).toBe(250);
    expect(keepAliveMs('0')).toBe(0);
    expect(keepAliveMs('-1m')).toBeNull();
    expect(() => keepAliveMs('soon')).toThrow(/keep_alive "soon"/);
    expect(() => keepAliveMs(Number.NaN)).toThrow(/finite/);
  });

  it('maps options to the runner: num_predict, sampling, stop; unknown options ignored', () => {
    const b = ollamaChatBody.parse({
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      options: { num_predict: 7, temperature: 0.2, top_k: 5, seed: 3, stop: ['\n'], mirostat: 1 },
    });
    expect(b.stream).toBe(true);
    expect(chatRunnerBody(b)).toEqual({
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 7,
      temperature: 0.2,
      top_k: 5,
      seed: 3,
      stop: ['\n'],
      stream: true,
      stream_options: { include_usage: true },
    });
    const unlimited = ollamaChatBody.parse({ model: 'm', options: { num_predict: -1 } });
    expect(chatRunnerBody(unlimited)).not.toHaveProperty('max_tokens');
  });

  it('sends raw prompts to completions and others to chat with the system prompt', () => {
    const raw = generateRunnerRequest(
      ollamaGenerateBody.parse({ model: 'm', prompt: 'x', raw: true }),
    );
    expect(raw.path).toBe('/v1/completions');
    expect(raw.body.prompt).toBe('x');
    const chat = generateRunnerRequest(
      ollamaGenerateBody.parse({ model: 'm', prompt: 'x', system: 'be brief' }),
    );
    expect(chat.path).toBe('/v1/chat/completions');
    expect(chat.body.messages).toEqual([
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'x' },
    ]);
  });

  it('rejects bad bodies with the field named', () => {
    const r = ollamaChatBody.safeParse({ model: 'm', options: { num_ctx: 5 } });
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path).toEqual(['options', 'num_ctx']);
  });

  it('parses runner SSE events, keeping an incomplete event for the next chunk', () => {
    const { events, rest } = splitEvents(
      'data: {"choices":[{"delta":{"content":"Hel"},"finish_reason":null}]}\n\n' +
        'data: {"choices":[{"delta":{},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n' +
        'data: [DONE]\n\ndata: {"choi',
    );
    expect(rest).toBe('data: {"choi');
    expect(events.map(parseRunnerEvent)).toEqual([
      { text: 'Hel' },
      { text: '', finishReason: 'length', usage: { prompt_tokens: 3, completion_tokens: 2 } },
      undefined,
    ]);
    expect(parseRunnerEvent('data: {"error":{"message":"boom","code":"runner_failed"}}')).toEqual({
      text: '',
      error: { message: 'boom', code: 'runner_failed' },
    });
  });
});
