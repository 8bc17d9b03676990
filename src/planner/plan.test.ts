import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fitConfig } from './fit.js';
import { PlanError, predictFootprint } from './footprint.js';
import { DEFAULT_ATTENTION_CAP, applyMeasurement, planLoad, requestedConfig } from './plan.js';
import { MEDIUM, SMALL, llamaSpec } from './test-specs.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const small = llamaSpec(SMALL); // trained context 32768
const medium = llamaSpec(MEDIUM);

describe('planLoad', () => {
  it('ok at the trained context when the room allows, with the formula footprint', () => {
    const plan = planLoad({ spec: small, available: { bytes: 8 * GiB } });
    expect(plan.verdict).toBe('ok');
    expect(plan.fit?.contextSize).toBe(32768);
    expect(plan.fit).toEqual(plan.config);
    expect(plan.source).toBe('formula');
    expect(plan.predicted).toEqual(predictFootprint(small, plan.fit!));
    expect(plan.reasons).toEqual([]);
    expect(plan.message).toMatch(/^fits: needs \d+ MB of 8\.6 GB$/);
  });

  it('warns when an explicit request had to be reduced, and says what was planned', () => {
    const plan = planLoad({
      spec: small,
      request: { contextSize: 32768, flashAttention: false },
      available: { bytes: 200 * MiB },
    });
    expect(plan.verdict).toBe('warn');
    expect(plan.causes).toContain('reduced');
    expect(plan.fit!.contextSize).toBeLessThan(32768);
    expect(plan.fit!.contextSize).toBeGreaterThanOrEqual(2048);
    expect(plan.predicted.total).toBeLessThanOrEqual(plan.room);
    expect(plan.reasons.at(-1)).toMatch(
      new RegExp(`^context 32768 needs .* planned with context ${plan.fit!.contextSize}$`),
    );
    expect(plan.guidance.at(-1)).toMatch(/^free \d+ MB to load it as requested$/);
  });

  it('does not warn when the trained context was only a default it could not reach', () => {
    const plan = planLoad({ spec: small, available: { bytes: 200 * MiB } });
    expect(plan.fit!.contextSize).toBeLessThan(32768);
    expect(plan.causes).not.toContain('reduced');
  });

  it('quantises the KV cache at the aggressive level, and says so', () => {
    const f16At = (ctx: number): number =>
      predictFootprint(small, requestedConfig(small, { contextSize: ctx })).total;
    const bytes = Math.floor((f16At(8192) + f16At(16384)) / 2);
    const plan = planLoad({
      spec: small,
      request: { contextSize: 16384, batchSize: 512 },
      available: { bytes },
      level: 'aggressive',
    });
    expect(plan.fit).toMatchObject({ contextSize: 16384, kvCacheKeyType: 'q8_0' });
    expect(plan.reasons.at(-1)).toMatch(/planned with a q8_0 KV cache$/);
  });

  it('refuses when nothing fits, with the budget reason and the guidance', () => {
    const plan = planLoad({ spec: medium, available: { bytes: 200 * MiB } });
    expect(plan.verdict).toBe('refuse');
    expect(plan.fit).toBeUndefined();
    expect(plan.config).toEqual(plan.requested.config);
    expect(plan.causes).toEqual(['budget']);
    expect(plan.reasons[0]).toMatch(/^needs [\d.]+ [MG]B, the model budget leaves 210 MB$/);
    expect(plan.guidance).toContain(
      'raise the budget (config "budget" or --budget), or unload other models',
    );
    expect(plan.guidance.at(-1)).toBe(
      'no smaller setting of this model fits now: free memory or use a smaller model',
    );
    expect(plan.message).toMatch(/^needs .*, the model budget leaves 210 MB: raise the budget/);
  });

  it('refuses with the machine reasons when hardware is given, and names the variant that fits', () => {
    const q8 = llamaSpec(MEDIUM, 'Q8_0');
    const need = predictFootprint(q8, requestedConfig(q8, { contextSize: 2048 })).total;
    const plan = planLoad({
      spec: medium,
      request: { contextSize: 4096 },
      available: { bytes: need + 20 * MiB },
      hardware: { totalRam: 16 * GiB, available: need + 20 * MiB, gpus: [] },
      variants: [{ name: 'Q8_0', spec: q8 }],
      modelName: 'medium',
    });
    expect(plan.verdict).toBe('refuse');
    expect(plan.causes).toEqual(['available', 'budget']);
    expect(plan.guidance[0]).toMatch(/^close other applications to free \d+ MB$/);
    expect(plan.guidance).toContain('or the Q8_0 variant');
    expect(plan.alternatives.at(-1)?.variant).toBe('Q8_0');
  });

  it('rejects a quantised KV cache with flash attention off, and bad numbers, with PlanError', () => {
    expect(() =>
      planLoad({
        spec: small,
        request: { kv: 'q8_0', flashAttention: false },
        available: { bytes: GiB },
      }),
    ).toThrow(/a q8_0 KV cache needs flash attention/);
    expect(() => planLoad({ spec: small, available: { bytes: -1 } })).toThrow(PlanError);
    expect(() => planLoad({ spec: small, available: { bytes: GiB, gpus: [NaN] } })).toThrow(
      /available.gpus/,
    );
    expect(() =>
      planLoad({ spec: small, request: { contextSize: 0 }, available: { bytes: GiB } }),
    ).toThrow(/contextSize must be an integer of at least 1/);
  });

  it('prefers a full-context measurement over the formula', () => {
    const plan = planLoad({
      spec: small,
      request: { contextSize: 4096 },
      available: { bytes: GiB },
      measured: (c) =>
        c.contextSize === 4096 ? { peak: 150 * MiB, rssAnon: 80 * MiB, contextFill: 1 } : undefined,
    });
    expect(plan.source).toBe('measured');
    expect(plan.predicted.total).toBe(150 * MiB);
    expect(plan.predicted.byKind).toEqual({ anonymous: 80 * MiB, fileBacked: 70 * MiB });
    expect(plan.formula.total).not.toBe(150 * MiB);
  });

  it('a measurement taken before the context filled can only raise the prediction', () => {
    const formula = predictFootprint(small, requestedConfig(small, { contextSize: 4096 }));
    expect(applyMeasurement(formula, { peak: formula.total / 2, rssAnon: 1 })).toEqual({
      footprint: formula,
      source: 'formula',
    });
    const up = applyMeasurement(formula, {
      peak: formula.total + MiB,
      rssAnon: 1,
      contextFill: 0.2,
    });
    expect(up.source).toBe('measured');
    expect(up.footprint.total).toBe(formula.total + MiB);
  });

  it('searches again when a measurement says the chosen config does not fit', () => {
    const bytes = predictFootprint(small, requestedConfig(small, { contextSize: 8192 })).total;
    const plan = planLoad({
      spec: small,
      request: { contextSize: 8192 },
      available: { bytes },
      measured: (c) =>
        c.contextSize === 8192 ? { peak: bytes + 5 * MiB, rssAnon: 0, contextFill: 1 } : undefined,
    });
    expect(plan.fit!.contextSize).toBeLessThan(8192);
    expect(plan.predicted.total).toBeLessThanOrEqual(bytes);
  });

  it('plans for the engine it is given: llama-server reads prompts in whole batches, with its own profile', () => {
    const request = { contextSize: 8192, flashAttention: false };
    const server = planLoad({
      spec: small,
      request,
      engine: 'llama-server',
      available: { bytes: 8 * GiB },
    });
    const embedded = planLoad({ spec: small, request, available: { bytes: 8 * GiB } });
    // No prompt chunk, cap or turns: a step is the whole batch, as llama-server reads it.
    expect(server.fit).toEqual({
      contextSize: 8192,
      parallel: 1,
      batchSize: 512,
      flashAttention: false,
      kvCacheKeyType: 'f16',
      kvCacheValueType: 'f16',
      gpuLayers: 0,
      mmap: true,
    });
    expect(server.predicted).toEqual(
      predictFootprint(small, server.fit!, { engine: 'llama-server' }),
    );
    expect(embedded.fit).toMatchObject({
      promptChunk: 64,
      attentionCap: DEFAULT_ATTENTION_CAP,
      promptTurns: true,
    });
    expect(embedded.predicted).toEqual(predictFootprint(small, embedded.fit!));
    // The embedded runner's 64-token chunks under its cap touch far less of the attention matrix
    // than llama-server's 512-token batches; everything else costs llama-server less.
    expect(server.predicted.terms.computeGraph).toBeGreaterThan(
      embedded.predicted.terms.computeGraph,
    );
    expect(server.predicted.overhead).toBeLessThan(embedded.predicted.overhead);
  });

  it('an explicit engine of "embedded" plans exactly as no engine does', () => {
    const input = { spec: medium, request: { contextSize: 4096 }, available: { bytes: 300 * MiB } };
    expect(planLoad({ ...input, engine: 'embedded' })).toEqual(planLoad(input));
    expect(requestedConfig(medium, {}, undefined, 'llama-server')).not.toHaveProperty(
      'promptChunk',
    );
  });

  it('the fit search prices the engine: the same room holds a longer llama-server context', () => {
    const bytes = 200 * MiB;
    const server = planLoad({ spec: small, engine: 'llama-server', available: { bytes } });
    const embedded = planLoad({ spec: small, available: { bytes } });
    expect(server.fit!.contextSize).toBeGreaterThan(embedded.fit!.contextSize);
    expect(server.predicted.total).toBeLessThanOrEqual(bytes);
  });

  it('offloads layers to the GPU given its free memory', () => {
    const plan = planLoad({ spec: medium, available: { bytes: 8 * GiB, gpus: [4 * GiB] } });
    expect(plan.fit!.gpuLayers).toBe(MEDIUM.layers + 1);
    expect(plan.predicted.byDevice.gpus[0]).toBeGreaterThan(0);
  });

  it('property: a fit never exceeds the room, and refuse ⇔ the fit search finds nothing', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 50, max: 2000 }),
        fc.constantFrom(undefined, 2048, 8192, 32768),
        fc.constantFrom('basic', 'aggressive', 'maximum') as fc.Arbitrary<
          'basic' | 'aggressive' | 'maximum'
        >,
        (mib, contextSize, level) => {
          const bytes = mib * MiB;
          const plan = planLoad({
            spec: small,
            request: { contextSize },
            available: { bytes },
            level,
          });
          const direct = fitConfig(small, {
            budgetBytes: bytes,
            requested: {
              contextSize: contextSize ?? 32768,
              parallel: 1,
              flashAttention: true,
              mmap: true,
              gpuLayers: 0,
              promptChunk: 64,
              attentionCap: DEFAULT_ATTENTION_CAP,
              promptTurns: true,
            },
            level,
          });
          expect(plan.fit).toEqual(direct?.config);
          if (plan.fit) expect(plan.predicted.total).toBeLessThanOrEqual(bytes);
          expect(plan.verdict === 'refuse').toBe(direct === undefined);
        },
      ),
      { numRuns: 150 },
    );
  });
});
