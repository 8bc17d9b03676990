import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ChatMessage } from '../engines/openai.js';
import { HeadroomError } from '../lib/errors.js';
import { planTruncateMiddle, truncateMiddle, type CountedMessage } from './overflow.js';

const msgs = (...spec: Array<[string, number]>): CountedMessage[] =>
  spec.map(([role, tokens]) => ({ role, tokens }));

describe('planTruncateMiddle', () => {
  it('keeps everything when it fits with room for max_tokens', () => {
    const p = planTruncateMiddle({
      messages: msgs(['system', 10], ['user', 10]),
      baseTokens: 2,
      contextSize: 100,
      maxTokens: 78,
    });
    expect(p).toEqual({ fits: true, keep: [0, 1], dropped: 0, promptTokens: 22 });
  });

  it('keeps the system prompt and the most recent turns, dropping the oldest', () => {
    const p = planTruncateMiddle({
      messages: msgs(
        ['system', 10],
        ['user', 30],
        ['assistant', 30],
        ['user', 20],
        ['assistant', 20],
        ['user', 10],
      ),
      baseTokens: 0,
      contextSize: 100,
      maxTokens: 35,
    });
    // limit 65: system 10 + last 10 + assistant 20 + user 20 = 60; the next (30) does not fit.
    expect(p).toEqual({ fits: true, keep: [0, 3, 4, 5], dropped: 2, promptTokens: 60 });
  });

  it('starts the kept tail at a user message', () => {
    const p = planTruncateMiddle({
      messages: msgs(['system', 10], ['user', 30], ['assistant', 10], ['user', 10]),
      baseTokens: 0,
      contextSize: 100,
      maxTokens: 70,
    });
    // limit 30: system 10 + last 10 + assistant 10 = 30 fits, but a tail starting with an answer is trimmed.
    expect(p).toEqual({ fits: true, keep: [0, 3], dropped: 2, promptTokens: 20 });
  });

  it('refuses when the system prompt and the last message alone do not fit', () => {
    const p = planTruncateMiddle({
      messages: msgs(['system', 50], ['user', 10], ['user', 40]),
      baseTokens: 5,
      contextSize: 100,
      maxTokens: 10,
    });
    expect(p).toEqual({ fits: false, promptTokens: 95 });
  });

  it('holds its invariants for any conversation (property)', () => {
    const role = fc.constantFrom('system', 'user', 'assistant', 'tool');
    fc.assert(
      fc.property(
        fc.array(fc.record({ role, tokens: fc.integer({ min: 1, max: 200 }) }), {
          minLength: 1,
          maxLength: 30,
        }),
        fc.integer({ min: 0, max: 20 }),
        fc.integer({ min: 50, max: 2000 }),
        fc.integer({ min: 1, max: 500 }),
        (messages, baseTokens, contextSize, maxTokens) => {
          const p = planTruncateMiddle({ messages, baseTokens, contextSize, maxTokens });
          if (!p.fits) {
            expect(p.promptTokens + maxTokens).toBeGreaterThan(contextSize);
            return;
          }
          const kept = p.keep.map((i) => messages[i]!);
          const used = kept.reduce((a, m) => a + m.tokens, baseTokens);
          expect(used).toBe(p.promptTokens);
          expect(used + maxTokens).toBeLessThanOrEqual(contextSize);
          expect(p.keep).toContain(messages.length - 1);
          messages.forEach((m, i) => {
            if (m.role === 'system') expect(p.keep).toContain(i);
          });
          // Kept non-system messages are one contiguous run ending at the last message.
          const others = p.keep.filter((i) => messages[i]!.role !== 'system');
          others.forEach(
            (i, k) =>
              k > 0 &&
              expect(i).toBe(others[k - 1]! + 1 + countSystemsBetween(messages, others[k - 1]!, i)),
          );
          expect(p.dropped).toBe(messages.length - p.keep.length);
        },
      ),
    );
  });
});

function countSystemsBetween(m: CountedMessage[], a: number, b: number): number {
  let n = 0;
  for (let i = a + 1; i < b; i++) if (m[i]!.role === 'system') n++;
  return n;
}

describe('truncateMiddle', () => {
  // One token per word: a tokenizer the test can count by hand.
  const tokenize = async (text: string): Promise<number> =>
    text.split(/\s+/).filter(Boolean).length;
  const signal = new AbortController().signal;
  const words = (n: number): string => Array.from({ length: n }, (_, i) => `w${i}`).join(' ');

  it('skips counting when an upper bound already fits', async () => {
    let calls = 0;
    const messages: ChatMessage[] = [{ role: 'user', content: 'hi' }];
    const r = await truncateMiddle({
      messages,
      contextSize: 4096,
      maxTokens: 16,
      tokenize: async () => (calls++, 1),
      signal,
    });
    expect(r).toEqual({ messages, dropped: 0 });
    expect(calls).toBe(0);
  });

  it('drops the middle of a long conversation by the tokenizer counts', async () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: words(300) },
      { role: 'assistant', content: words(300) },
      { role: 'user', content: words(50) },
      { role: 'assistant', content: words(50) },
      { role: 'user', content: 'last' },
    ];
    const r = await truncateMiddle({
      messages,
      contextSize: 512,
      maxTokens: 100,
      tokenize,
      signal,
    });
    expect(r.dropped).toBe(2);
    expect(r.messages.map((m) => m.content)).toEqual(['be brief', words(50), words(50), 'last']);
    expect(r.promptTokens! + 100).toBeLessThanOrEqual(512);
  });

  it('rejects with context_length_exceeded and the counts when nothing can be dropped to fit', async () => {
    const messages: ChatMessage[] = [{ role: 'user', content: words(600) }];
    const err = await truncateMiddle({
      messages,
      contextSize: 512,
      maxTokens: 10,
      tokenize,
      signal,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HeadroomError);
    expect((err as HeadroomError).code).toBe('context_length_exceeded');
    expect((err as HeadroomError).status).toBe(400);
    expect((err as HeadroomError).details).toMatchObject({ contextSize: 512, maxTokens: 10 });
  });
});
