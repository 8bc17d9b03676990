import { describe, expect, it } from 'vitest';
import { ChunkSizer, PROMPT_CHUNK_TARGET_MS, PROMPT_CHUNK_TOKENS } from './engine.js';

describe('ChunkSizer', () => {
  it('starts small, then sizes chunks to the target time', () => {
    const c = new ChunkSizer();
    expect(c.size()).toBe(16);
    c.observe(16, 16 * 2); // 2 ms per token
    expect(c.size()).toBe(Math.floor(PROMPT_CHUNK_TARGET_MS / 2));
  });

  it('never exceeds the planner-sized maximum nor falls below 4 tokens', () => {
    const fast = new ChunkSizer();
    fast.observe(64, 1);
    expect(fast.size()).toBe(PROMPT_CHUNK_TOKENS);
    const slow = new ChunkSizer();
    slow.observe(4, 4 * 200);
    expect(slow.size()).toBe(4);
  });

  it('follows a machine that slows down, and ignores empty chunks', () => {
    const c = new ChunkSizer();
    c.observe(10, 10);
    const before = c.size();
    for (let i = 0; i < 10; i++) c.observe(10, 100);
    expect(c.size()).toBeLessThan(before);
    c.observe(0, 5);
    c.observe(5, Number.NaN);
    expect(c.size()).toBe(
      Math.max(4, Math.min(PROMPT_CHUNK_TOKENS, Math.floor(PROMPT_CHUNK_TARGET_MS / 10))),
    );
  });
});
