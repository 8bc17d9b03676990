import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fitConfig, pickVariant, type FitRequest, type OptimisationLevel } from './fit.js';
import { PlanError, predictFootprint, type KvCacheType, type PlanConfig } from './footprint.js';
import { MEMORY_PRESETS, defaultBudget, presetFor } from './presets.js';
import { LARGE, MEDIUM, SMALL, llamaSpec, type LlamaShape } from './test-specs.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const medium = llamaSpec(MEDIUM);

function totalAt(spec = medium, c: Partial<PlanConfig> = {}): number {
  return predictFootprint(spec, {
    contextSize: 2048,
    parallel: 1,
    batchSize: 512,
    flashAttention: true,
    kvCacheKeyType: 'f16',
    kvCacheValueType: 'f16',
    gpuLayers: 0,
    mmap: true,
    ...c,
  }).total;
}

describe('fitConfig', () => {
  it('takes the trained context when the budget allows', () => {
    const fit = fitConfig(medium, { budgetBytes: 8 * GiB });
    expect(fit?.config).toMatchObject({
      contextSize: 32768,
      kvCacheKeyType: 'f16',
      batchSize: 512,
      flashAttention: true,
      parallel: 1,
    });
  });

  it('basic: only shrinks the context (to a multiple of 256), never below the minimum', () => {
    const budget = totalAt(medium, { contextSize: 10_000 });
    const fit = fitConfig(medium, { budgetBytes: budget, level: 'basic' })!;
    expect(fit.config.kvCacheKeyType).toBe('f16');
    expect(fit.config.contextSize % 256).toBe(0);
    // 10000 tokens take 10240 cells (padding to 256), so 10240 costs the same and fits.
    expect(fit.config.contextSize).toBe(10240);
    expect(fit.footprint.total).toBeLessThanOrEqual(budget);
    expect(
      fitConfig(medium, {
        budgetBytes: totalAt(medium, { contextSize: 2048 }) - 1,
        level: 'basic',
      }),
    ).toBeUndefined();
  });

  it('aggressive: a q8_0 KV cache when it keeps more context; maximum: q4_0', () => {
    const budget = totalAt(medium, { contextSize: 8192 });
    const basic = fitConfig(medium, { budgetBytes: budget, level: 'basic' })!;
    const aggressive = fitConfig(medium, { budgetBytes: budget, level: 'aggressive' })!;
    const maximum = fitConfig(medium, { budgetBytes: budget, level: 'maximum' })!;
    expect(basic.config.kvCacheKeyType).toBe('f16');
    expect(aggressive.config.kvCacheKeyType).toBe('q8_0');
    expect(aggressive.config.contextSize).toBeGreaterThan(basic.config.contextSize);
    expect(maximum.config.kvCacheKeyType).toBe('q4_0');
    expect(maximum.config.contextSize).toBeGreaterThan(aggressive.config.contextSize);
    expect(maximum.config.flashAttention).toBe(true);
  });

  it('keeps f16 when it already reaches the requested context', () => {
    const fit = fitConfig(medium, {
      budgetBytes: 4 * GiB,
      requested: { contextSize: 4096 },
      level: 'maximum',
    })!;
    expect(fit.config).toMatchObject({ contextSize: 4096, kvCacheKeyType: 'f16', batchSize: 512 });
  });

  it('keeps an explicitly requested KV type, batch and parallel', () => {
    const fit = fitConfig(medium, {
      budgetBytes: 4 * GiB,
      requested: {
        kvCacheKeyType: 'q8_0',
        kvCacheValueType: 'q8_0',
        batchSize: 256,
        parallel: 3,
        contextSize: 8192,
      },
    })!;
    expect(fit.config).toMatchObject({
      kvCacheKeyType: 'q8_0',
      kvCacheValueType: 'q8_0',
      batchSize: 256,
      parallel: 3,
      contextSize: 8192,
      flashAttention: true,
    });
  });

  it('aggressive shrinks the batch when that is what makes the minimum context fit', () => {
    const spec = llamaSpec(SMALL);
    const atMin512 = totalAt(spec, {
      contextSize: 2048,
      kvCacheKeyType: 'q8_0',
      kvCacheValueType: 'q8_0',
      flashAttention: false,
    });
    const atMin128 = totalAt(spec, {
      contextSize: 2048,
      kvCacheKeyType: 'q8_0',
      kvCacheValueType: 'q8_0',
      batchSize: 128,
    });
    expect(atMin128).toBeLessThan(atMin512);
    const budget = totalAt(spec, { contextSize: 2048, batchSize: 128 });
    const fit = fitConfig(spec, {
      budgetBytes: budget,
      level: 'aggressive',
      requested: { contextSize: 2048 },
    })!;
    expect(fit.footprint.total).toBeLessThanOrEqual(budget);
    expect(fit.config.batchSize).toBeLessThan(512);
  });

  it('lowMemory: one slot, batch 128, mmap', () => {
    const fit = fitConfig(medium, {
      budgetBytes: 4 * GiB,
      lowMemory: true,
      requested: { parallel: 4, mmap: false },
    })!;
    expect(fit.config).toMatchObject({ parallel: 1, batchSize: 128, mmap: true });
  });

  it('offloads as many layers as the GPU budget takes', () => {
    const spec = llamaSpec(LARGE);
    const all = fitConfig(spec, {
      budgetBytes: 16 * GiB,
      requested: { contextSize: 4096 },
      gpuBudgetBytes: 64 * GiB,
    })!;
    expect(all.config.gpuLayers).toBe(LARGE.layers + 1);
    const some = fitConfig(spec, {
      budgetBytes: 16 * GiB,
      requested: { contextSize: 4096 },
      gpuBudgetBytes: 1 * GiB,
    })!;
    expect(some.config.gpuLayers).toBeGreaterThan(0);
    expect(some.config.gpuLayers).toBeLessThan(LARGE.layers);
    expect(some.footprint.byDevice.gpus[0]).toBeLessThanOrEqual(1 * GiB);
  });

  it("prices candidates with the engine's profile", () => {
    const budgetBytes = 500 * MiB;
    const server = fitConfig(medium, { budgetBytes, engine: 'llama-server' })!;
    expect(server).toEqual(
      fitConfig(medium, { budgetBytes, footprintOptions: { engine: 'llama-server' } }),
    );
    expect(server.footprint).toEqual(
      predictFootprint(medium, server.config, { engine: 'llama-server' }),
    );
    expect(server.config.contextSize).toBeGreaterThan(
      fitConfig(medium, { budgetBytes })!.config.contextSize,
    );
  });

  it('rejects a bad request with PlanError', () => {
    expect(() => fitConfig(medium, { budgetBytes: -1 })).toThrow(PlanError);
    expect(() => fitConfig(medium, { budgetBytes: 1e9, minContext: 0 })).toThrow(/minContext/);
    expect(() =>
      fitConfig(medium, { budgetBytes: 1e9, level: 'extreme' as OptimisationLevel }),
    ).toThrow(/level/);
  });

  const shapeArb = fc.record({
    layers: fc.integer({ min: 1, max: 40 }),
    heads: fc.constantFrom(8, 16, 32),
    gqa: fc.constantFrom(1, 4, 8),
    headDim: fc.constantFrom(32, 64, 128),
    vocab: fc.integer({ min: 2000, max: 130_000 }),
    ctx: fc.constantFrom(2048, 4096, 8192, 32768, 131072),
  });
  const toSpec = (s: {
    layers: number;
    heads: number;
    gqa: number;
    headDim: number;
    vocab: number;
    ctx: number;
  }) => {
    const embd = s.heads * s.headDim;
    const shape: LlamaShape = {
      layers: s.layers,
      embd,
      heads: s.heads,
      kvHeads: s.heads / s.gqa,
      ff: Math.round((embd * 8) / 3),
      vocab: s.vocab,
      ctx: s.ctx,
    };
    return llamaSpec(shape);
  };
  const reqArb = fc.record({
    level: fc.constantFrom<OptimisationLevel>('basic', 'aggressive', 'maximum'),
    lowMemory: fc.boolean(),
    flashAttention: fc.option(fc.boolean(), { nil: undefined }),
    parallel: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
    contextSize: fc.option(fc.integer({ min: 512, max: 65536 }), { nil: undefined }),
  });
  const request = (
    r: {
      level: OptimisationLevel;
      lowMemory: boolean;
      flashAttention: boolean | undefined;
      parallel: number | undefined;
      contextSize: number | undefined;
    },
    budgetBytes: number,
  ): FitRequest => ({
    budgetBytes,
    level: r.level,
    lowMemory: r.lowMemory,
    requested: {
      flashAttention: r.flashAttention,
      parallel: r.parallel,
      contextSize: r.contextSize,
    },
  });

  it('property: the chosen config never exceeds the budget, and stays within the request', () => {
    fc.assert(
      fc.property(
        shapeArb,
        reqArb,
        fc.double({ min: 0, max: 64 * GiB, noNaN: true }),
        (s, r, budget) => {
          const spec = toSpec(s);
          const fit = fitConfig(spec, request(r, budget));
          if (!fit) return;
          expect(fit.footprint.total).toBeLessThanOrEqual(budget);
          expect(predictFootprint(spec, fit.config).total).toBe(fit.footprint.total);
          expect(fit.config.contextSize).toBeLessThanOrEqual(r.contextSize ?? spec.contextLength);
          if (r.level === 'basic') expect(fit.config.kvCacheKeyType).toBe('f16');
          if (r.level !== 'maximum') expect(fit.config.kvCacheKeyType).not.toBe('q4_0');
        },
      ),
      { numRuns: 200 },
    );
  });

  it('property: a larger budget never yields a smaller context', () => {
    fc.assert(
      fc.property(
        shapeArb,
        reqArb,
        fc.double({ min: 0, max: 32 * GiB, noNaN: true }),
        fc.double({ min: 0, max: 32 * GiB, noNaN: true }),
        (s, r, b1, b2) => {
          const spec = toSpec(s);
          const lo = fitConfig(spec, request(r, Math.min(b1, b2)));
          const hi = fitConfig(spec, request(r, Math.max(b1, b2)));
          if (lo) {
            expect(hi).toBeDefined();
            expect(hi!.config.contextSize).toBeGreaterThanOrEqual(lo.config.contextSize);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('property: no fit only when no config the level allows fits at the minimum context', () => {
    fc.assert(
      fc.property(
        shapeArb,
        reqArb,
        fc.double({ min: 0, max: 8 * GiB, noNaN: true }),
        (s, r, budget) => {
          const spec = toSpec(s);
          const fit = fitConfig(spec, request(r, budget));
          const target = r.contextSize ?? spec.contextLength;
          const min = Math.min(2048, target);
          const kvs: KvCacheType[] =
            r.level === 'basic'
              ? ['f16']
              : r.level === 'aggressive'
                ? ['f16', 'q8_0']
                : ['f16', 'q8_0', 'q4_0'];
          const batches =
            r.level === 'basic' ? [r.lowMemory ? 128 : 512] : r.lowMemory ? [128] : [512, 256, 128];
          const parallel = r.lowMemory ? 1 : (r.parallel ?? 1);
          let anyFits = false;
          for (const kv of kvs)
            for (const batchSize of batches) {
              const fa = kv === 'f16' ? (r.flashAttention ?? true) : true;
              const t = predictFootprint(spec, {
                contextSize: min,
                parallel,
                batchSize,
                flashAttention: fa,
                kvCacheKeyType: kv,
                kvCacheValueType: kv,
                gpuLayers: 0,
                mmap: true,
              }).total;
              if (t <= budget) anyFits = true;
            }
          expect(fit !== undefined).toBe(anyFits);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('pickVariant', () => {
  const variants = [
    { name: 'Q8_0', spec: llamaSpec(LARGE, 'Q8_0') },
    { name: 'F32', spec: llamaSpec(LARGE, 'F32') },
    { name: 'F16', spec: llamaSpec(LARGE, 'F16') },
  ];
  it('chooses the highest precision that fits at the minimum context', () => {
    const f16At2k = totalAt(llamaSpec(LARGE, 'F16'), { contextSize: 2048 });
    expect(pickVariant(variants, { budgetBytes: 64 * GiB })?.variant.name).toBe('F32');
    expect(pickVariant(variants, { budgetBytes: f16At2k })?.variant.name).toBe('F16');
    const q8 = pickVariant(variants, { budgetBytes: f16At2k - 1 });
    expect(q8?.variant.name).toBe('Q8_0');
    expect(q8!.footprint.total).toBeLessThanOrEqual(f16At2k - 1);
    expect(pickVariant(variants, { budgetBytes: 100 * MiB })).toBeUndefined();
  });
});

describe('presets', () => {
  it('puts machines in memory classes (at 90% of nominal) and budgets below total − reserve', () => {
    expect(presetFor(2 * GiB).memoryClass).toBe('4GB');
    expect(presetFor(7.6 * GiB).memoryClass).toBe('8GB');
    expect(presetFor(15.5 * GiB).memoryClass).toBe('16GB');
    expect(presetFor(24 * GiB).memoryClass).toBe('24GB');
    expect(presetFor(31 * GiB).memoryClass).toBe('32GB');
    expect(presetFor(512 * GiB).memoryClass).toBe('64GB+');
    for (const p of MEMORY_PRESETS) {
      const b = defaultBudget(p.nominalBytes, p);
      expect(b).toBeLessThanOrEqual(p.nominalBytes - p.reserveBytes);
      expect(b).toBeLessThanOrEqual(p.nominalBytes * p.budgetFraction);
      expect(b).toBeGreaterThan(0);
    }
    expect(defaultBudget(1 * GiB)).toBe(0);
    expect(defaultBudget(24 * GiB)).toBe(18 * GiB);
  });
});
