import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_ATTENTION_CAP, DEFAULT_PROMPT_CHUNK } from '../../planner/plan.js';
import {
  ATTENTION_SCRATCH_CAP,
  ChunkSizer,
  PROMPT_CHUNK_TARGET_MS,
  PROMPT_CHUNK_TOKENS,
  attentionChunkLimit,
} from './engine.js';

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

describe('attentionChunkLimit', () => {
  it('keeps the attention scores of a step under the cap the planner predicts, at every position', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 256, max: 131072 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 128 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (cells, parallel, heads, at) => {
          const pos = Math.floor(at * (cells - 1));
          const n = attentionChunkLimit(pos, cells, parallel, heads);
          expect(n).toBeGreaterThanOrEqual(1);
          expect(n).toBeLessThanOrEqual(PROMPT_CHUNK_TOKENS);
          // The cells in use after the step, padded as llama.cpp pads them (every slot's cells
          // when a batch may span several slots).
          const nKv = parallel === 1 ? Math.min(cells, Math.ceil((pos + n) / 256) * 256) : cells;
          if (n > 1)
            expect(parallel * nKv * n * heads * 4).toBeLessThanOrEqual(ATTENTION_SCRATCH_CAP);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('takes whole chunks early in a long context and small ones late; no limit without scores', () => {
    // 20M bench model (12 heads) at 8192 cells: 64 tokens at the start, 21 at the end.
    expect(attentionChunkLimit(0, 8192, 1, 12)).toBe(PROMPT_CHUNK_TOKENS);
    expect(attentionChunkLimit(8000, 8192, 1, 12)).toBe(21);
    expect(attentionChunkLimit(8000, 8192, 1, 0)).toBe(PROMPT_CHUNK_TOKENS);
    // Four slots: every step is sized for all four slots' cells.
    expect(attentionChunkLimit(0, 8192, 4, 12)).toBe(5);
  });
});

describe('the planner plans what the runner does', () => {
  it('mirrors the runner’s prompt chunk and attention cap (the planner may not import engines)', () => {
    expect(DEFAULT_PROMPT_CHUNK).toBe(PROMPT_CHUNK_TOKENS);
    expect(DEFAULT_ATTENTION_CAP).toBe(ATTENTION_SCRATCH_CAP);
  });
});
