/**
 * The runner does not pile up native garbage while it reads a long prompt. node-llama-cpp makes a
 * sampler per evaluation call whose n_vocab × 12-byte candidates array is freed only when V8
 * collects its wrapper (src/engines/embedded/native-garbage.ts). On a large-vocabulary model,
 * reading a 3k-token prompt in chunks used to add ~100 MiB of anonymous memory that no plan
 * accounts for; the runner now collects it as it goes. Asserted: anonymous memory after the
 * prompt stays within a few MiB of what the runner held after its first short request.
 *
 * With several slots busy at once the garbage used to become a leak: a collection while a native
 * batch is in flight loses the samplers' finalizers (native-garbage.ts), so each request left
 * megabytes behind for good. Asserted: rounds of four concurrent requests do not make the runner
 * grow.
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

// 64k vocabulary on a tiny body: each evaluation call leaves 750 KiB behind.
const vocab64k = (): Promise<string> =>
  cachedModel('vocab64k', {
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

describe('runner memory while reading a long prompt', () => {
  let runner: StartedRunner;

  beforeAll(async () => {
    const file = await vocab64k();
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

describe('runner memory while serving concurrent requests', () => {
  let runner: StartedRunner;

  beforeAll(async () => {
    const file = await vocab64k();
    runner = await startRunner(runnerConfig(file, { contextSize: 1024, parallel: 4, threads: 1 }));
  }, 60_000);
  afterAll(() => {
    runner?.proc.kill('SIGKILL');
  });

  it('does not grow over rounds of four requests at once', async () => {
    const round = async (r: number): Promise<void> => {
      await Promise.all(
        [0, 1, 2, 3].map(async (i) => {
          const res = await post(runner.url, '/v1/completions', {
            prompt: text(120, `${r}x${i}`),
            max_tokens: 8,
            temperature: 0,
          });
          const body = await res.text();
          expect(res.status, body).toBe(200);
        }),
      );
    };
    await round(0);
    const before = await stats(runner.url);
    for (let r = 1; r <= 5; r++) await round(r);
    const after = await stats(runner.url);
    const grew = (after.rssAnon - before.rssAnon) / MiB;
    console.log(
      `runner anon: ${(before.rssAnon / MiB).toFixed(1)} MiB → ${(after.rssAnon / MiB).toFixed(1)} MiB over 5 rounds of 4 concurrent requests (${after.gcCollections} collections, ${after.gcMajorCollections} full)`,
    );
    // Calls overlapped, so the runner ran full collections.
    expect(after.gcMajorCollections).toBeGreaterThan(0);
    // Leaking: 20 requests × ~10 calls × 750 KiB × (3 of 4 lost) ≈ 110 MiB.
    expect(grew).toBeLessThan(16);
  }, 180_000);
});
