import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_CARRY, StreamObserver, usageFromJsonTail } from './stream-observer.js';

const ev = (o: unknown): string => `data: ${JSON.stringify(o)}\n\n`;
const content = (t: string): string =>
  ev({
    id: 'x',
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta: { content: t }, finish_reason: null }],
  });
const usage = ev({
  id: 'x',
  choices: [],
  usage: {
    prompt_tokens: 12,
    completion_tokens: 5,
    total_tokens: 17,
    prompt_tokens_details: { cached_tokens: 7 },
  },
});
const stream = [content('a'), content('"usage": no'), content('b'), usage, 'data: [DONE]\n\n'];

function run(chunks: Buffer[], strip: boolean): { out: string; obs: StreamObserver } {
  let t = 0;
  const obs = new StreamObserver({ sse: true, stripUsage: strip, now: () => ++t });
  const parts = chunks.map((c) => obs.push(c));
  parts.push(obs.end());
  return { out: Buffer.concat(parts).toString('utf8'), obs };
}

describe('StreamObserver', () => {
  it('reads the usage event and passes every byte through when not stripping', () => {
    const { out, obs } = run(
      stream.map((s) => Buffer.from(s)),
      false,
    );
    expect(out).toBe(stream.join(''));
    expect(obs.usage).toEqual({ promptTokens: 12, completionTokens: 5, cachedTokens: 7 });
    expect(obs.events).toBe(5);
    expect(obs.firstAt).toBe(1);
    expect(obs.done).toBe(true);
  });

  it('knows the final event went out only once it has', () => {
    const obs = new StreamObserver({ sse: true });
    obs.push(Buffer.from(stream.slice(0, 4).join('')));
    expect(obs.done).toBe(false);
    obs.push(Buffer.from('data: [DO'));
    expect(obs.done).toBe(false);
    obs.push(Buffer.from('NE]\n\n'));
    expect(obs.done).toBe(true);
  });

  it('removes the usage event when stripping, and only it (generated text quoting "usage": is escaped)', () => {
    const { out, obs } = run(
      stream.map((s) => Buffer.from(s)),
      true,
    );
    expect(out).toBe([stream[0], stream[1], stream[2], stream[4]].join(''));
    expect(obs.usage?.completionTokens).toBe(5);
  });

  it('gives the same bytes and usage however the stream is split into chunks (property)', () => {
    const whole = Buffer.from(stream.join(''));
    const expected = [stream[0], stream[1], stream[2], stream[4]].join('');
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: whole.length - 1 }), { maxLength: 20 }),
        (cuts) => {
          const points = [0, ...cuts.sort((a, b) => a - b), whole.length];
          const chunks = points.slice(1).map((p, i) => whole.subarray(points[i], p));
          const { out, obs } = run(chunks, true);
          expect(out).toBe(expected);
          expect(obs.usage?.promptTokens).toBe(12);
          expect(obs.carried).toBe(0);
        },
      ),
    );
  });

  it('holds back at most one incomplete event and gives up observing past MAX_CARRY', () => {
    const obs = new StreamObserver({ sse: true });
    expect(obs.push(Buffer.from('data: {"a":'))).toHaveLength(0);
    expect(obs.carried).toBe(11);
    const big = Buffer.alloc(MAX_CARRY + 1, 0x61);
    expect(obs.push(big).length).toBe(MAX_CARRY + 12);
    const after = Buffer.from('xyz');
    expect(obs.push(after)).toBe(after);
  });

  it('reads usage and error codes from the end of a JSON answer', () => {
    const body = JSON.stringify({
      id: 'c',
      choices: [{ index: 0, message: { role: 'assistant', content: 'x'.repeat(10_000) } }],
      usage: {
        prompt_tokens: 3,
        completion_tokens: 4,
        total_tokens: 7,
        prompt_tokens_details: { cached_tokens: 0 },
      },
    });
    const obs = new StreamObserver({ sse: false });
    const b = Buffer.from(body);
    obs.push(b.subarray(0, 5000));
    obs.push(b.subarray(5000, 10_050));
    obs.push(b.subarray(10_050));
    obs.end();
    expect(obs.usage).toEqual({ promptTokens: 3, completionTokens: 4, cachedTokens: 0 });

    const err = new StreamObserver({ sse: false });
    err.push(
      Buffer.from(
        JSON.stringify({
          error: {
            message: 'too long',
            type: 'x',
            param: 'messages',
            code: 'context_length_exceeded',
          },
        }),
      ),
    );
    err.end();
    expect(err.errorCode).toBe('context_length_exceeded');
    expect(err.usage).toBeUndefined();
  });

  it('usageFromJsonTail reads usage whatever keys follow it (llama-server ends with id and timings)', () => {
    const tail =
      '"finish_reason":"length"}],"usage":{"completion_tokens":5,"prompt_tokens":8,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":3}},"id":"chatcmpl-x","timings":{"cache_n":3,"prompt_n":5}}';
    expect(usageFromJsonTail(tail)).toMatchObject({
      promptTokens: 8,
      completionTokens: 5,
      cachedTokens: 3,
    });
    expect(usageFromJsonTail('{"usage":{"prompt_tokens":1,"completion_tokens":2}}')).toMatchObject({
      promptTokens: 1,
      completionTokens: 2,
    });
  });

  it('usageFromJsonTail ignores a tail without a usage object', () => {
    expect(usageFromJsonTail('{"a":1}')).toBeUndefined();
    expect(usageFromJsonTail('"usage":{"prompt_tokens":1}}')).toBeUndefined();
  });
});
