/**
 * The runner does not pile up native garbage while it reads a long prompt. node-llama-cpp makes a
 * sampler per evaluation call whose n_vocab × 12-byte candidates array is freed only when V8
 * collects its wrapper (src/engines/embedded/native-garbage.ts). On a large-vocabulary model,
 * reading a 3k-token prompt in chunks used to add ~100 MiB of anonymous memory that no plan
 * accounts for; the runner now collects it as it goes. Asserted: anonymous memory after the
 * prompt stays within a few MiB of what the runner held after its first short request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedModel } from '../helpers/models.js';
import { post, runnerConfig, startRunner, stats, type StartedRunner } from '../helpers/runner.js';

const MiB = 1024 * 1024;

/** Words of letters and digits the forged tokenizer splits into many tokens. */
function text(words: number, salt: string): string {
  return Array.from({ length: words }, (_, i) => `w${salt}${(i * 7919) % 1000}`).join(' ');
}

async function complete(url: string, prompt: string): Promise<number> {
  const res = await post(url, '/v1/completions', { prompt, max_tokens: 1, temperature: 0 });
  expect(res.status).toBe(200);
  return ((await res.json()) as { usage: { prompt_tokens: number } }).usage.prompt_tokens;
}

describe('runner memory while reading a long prompt', () => {
  let runner: StartedRunner;

  beforeAll(async () => {
    // 64k vocabulary on a tiny body: each evaluation call leaves 750 KiB behind.
    const file = await cachedModel('vocab64k', {
      layers: 2,
      embd: 128,
      heads: 4,
      kvHeads: 2,
      ff: 384,
      vocab: 64_000,
      type: 'f16',
      ctx: 4096,
      seed: 5,
    });
    // One thread: llama.cpp's spinning workers crawl when a second one has to share a busy core.
    runner = await startRunner(runnerConfig(file, { contextSize: 4096, threads: 1 }));
  }, 60_000);
  afterAll(() => {
    runner?.proc.kill('SIGKILL');
  });

  it('holds no more anonymous memory after a 3k-token prompt than after a short one', async () => {
    await complete(runner.url, text(5, 'a'));
    const before = await stats(runner.url);
    const tokens = await complete(runner.url, text(750, 'b'));
    const after = await stats(runner.url);
    const grew = (after.rssAnon - before.rssAnon) / MiB;
    console.log(
      `runner anon: ${(before.rssAnon / MiB).toFixed(1)} MiB → ${(after.rssAnon / MiB).toFixed(1)} MiB after a ${tokens}-token prompt`,
    );
    expect(tokens).toBeGreaterThan(2500);
    // The runner collected as it read (V8 alone may or may not have, depending on timing).
    expect(after.gcCollections).toBeGreaterThan(before.gcCollections ?? 0);
    // Without collection: ~750 KiB × ~50 calls ≈ 37 MiB and more.
    expect(grew).toBeLessThan(12);
  }, 120_000);
});
