import { describe, expect, it } from 'vitest';
import { promptChars, savesOnStop } from './state-keeper.js';

describe('savesOnStop', () => {
  it('saves before unloads that leave time for it, never before forced or critical ones', () => {
    for (const r of [
      'ttl',
      'evicted',
      'max-models',
      'over-budget',
      'unload',
      'reload',
      'recycle',
    ] as const)
      expect(savesOnStop(r)).toBe(true);
    expect(savesOnStop('pressure', 'high')).toBe(true);
    expect(savesOnStop('pressure', 'critical')).toBe(false);
    for (const r of ['forced', 'drain-deadline', 'shutdown', 'load-cancelled'] as const)
      expect(savesOnStop(r)).toBe(false);
  });
});

describe('promptChars', () => {
  it('counts the text of chat messages, content parts and completion prompts', () => {
    expect(
      promptChars({
        messages: [
          { role: 'system', content: 'abc' },
          { role: 'user', content: [{ type: 'text', text: 'hello' }, { type: 'image_url' }] },
        ],
      }),
    ).toBe(8);
    expect(promptChars({ prompt: 'twelve chars' })).toBe(12);
    expect(promptChars({ prompt: [1, 2, 3] })).toBe(3);
    expect(promptChars({ model: 'x' })).toBe(0);
  });
});
