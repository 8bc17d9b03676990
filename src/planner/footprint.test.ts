import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  FOOTPRINT_CONSTANTS,
  FOOTPRINT_PROFILES,
  PlanError,
  contextCells,
  kvBytesPerCell,
  predictFootprint,
  type FootprintEngine,
  type PlanConfig,
} from './footprint.js';
import {
  GEMMA3_27B_Q4_K_M,
  LARGE,
  LLAMA3_8B_Q4_K_M,
  MEDIUM,
  SMALL,
  llamaSpec,
} from './test-specs.js';

const MiB = 1024 * 1024;
const base: PlanConfig = {
  contextSize: 2048,
  parallel: 1,
  batchSize: 512,
  flashAttention: true,
  kvCacheKeyType: 'f16',
  kvCacheValueType: 'f16',
  gpuLayers: 0,
  mmap: true,
};

/** The terms in MiB with one decimal: what the snapshots pin. */
function mib(spec = llamaSpec(SMALL), config: Partial<PlanConfig> = {}): Record<string, number> {
  const f = predictFootprint(spec, { ...base, ...config });
  const r = (n: number): number => Math.round((n / MiB) * 10) / 10;
  return {
    total: r(f.total),
    weights: r(f.weights),
    kvCache: r(f.kvCache),
    compute: r(f.compute),
    overhead: r(f.overhead),
    anonymous: r(f.byKind.anonymous),
    fileBacked: r(f.byKind.fileBacked),
    graph: r(f.terms.computeGraph),
    work: r(f.terms.computeWork),
    slack: r(f.terms.allocatorSlack),
    modelExtra: r(f.terms.modelExtra),
    growth: r(f.terms.runtimeGrowth),
    tokenGarbage: r(f.terms.tokenGarbage),
    cells: f.terms.contextCells,
  };
}

describe('predictFootprint terms (pinned)', () => {
  it('20M F16, 2048, flash attention on', () => {
    expect(mib()).toMatchInlineSnapshot(`
      {
        "anonymous": 58.3,
        "cells": 2048,
        "compute": 10,
        "fileBacked": 87.1,
        "graph": 9,
        "growth": 0,
        "kvCache": 6,
        "modelExtra": 0,
        "overhead": 93.8,
        "slack": 0,
        "tokenGarbage": 0,
        "total": 145.5,
        "weights": 35.6,
        "work": 1,
      }
    `);
  });
  it('20M F16, 8192, flash attention off, whole batches: the attention matrix, its work copy and allocator slack', () => {
    expect(mib(llamaSpec(SMALL), { contextSize: 8192, flashAttention: false }))
      .toMatchInlineSnapshot(`
        {
          "anonymous": 374.1,
          "cells": 8192,
          "compute": 307,
          "fileBacked": 87.1,
          "graph": 211,
          "growth": 0,
          "kvCache": 24,
          "modelExtra": 0,
          "overhead": 94.5,
          "slack": 0,
          "tokenGarbage": 0.4,
          "total": 461.2,
          "weights": 35.6,
          "work": 96,
        }
      `);
  });
  it('155M Q8_0 without mmap: weights are anonymous', () => {
    expect(mib(llamaSpec(MEDIUM, 'Q8_0'), { mmap: false })).toMatchInlineSnapshot(`
      {
        "anonymous": 246.7,
        "cells": 2048,
        "compute": 22.2,
        "fileBacked": 51.5,
        "graph": 20.8,
        "growth": 0,
        "kvCache": 22,
        "modelExtra": 0,
        "overhead": 96.5,
        "slack": 0,
        "tokenGarbage": 0,
        "total": 298.2,
        "weights": 157.5,
        "work": 1.4,
      }
    `);
  });
  it('1B F16, 32768, q8_0 KV, two slots', () => {
    expect(
      mib(llamaSpec(LARGE), {
        contextSize: 32768,
        parallel: 2,
        kvCacheKeyType: 'q8_0',
        kvCacheValueType: 'q8_0',
      }),
    ).toMatchInlineSnapshot(`
      {
        "anonymous": 1494.7,
        "cells": 65536,
        "compute": 74.8,
        "fileBacked": 1976.8,
        "graph": 69.3,
        "growth": 0,
        "kvCache": 1360,
        "modelExtra": 0,
        "overhead": 111.4,
        "slack": 0,
        "tokenGarbage": 6,
        "total": 3471.5,
        "weights": 1925.3,
        "work": 5.3,
      }
    `);
  });
  it('8B Q4_K_M at 8192: Q4_K weights are repacked into anonymous memory', () => {
    expect(mib(LLAMA3_8B_Q4_K_M, { contextSize: 8192 })).toMatchInlineSnapshot(`
      {
        "anonymous": 4666.4,
        "cells": 8192,
        "compute": 104.5,
        "fileBacked": 1288.3,
        "graph": 96,
        "growth": 0,
        "kvCache": 1024,
        "modelExtra": 0,
        "overhead": 133.5,
        "slack": 0,
        "tokenGarbage": 0.4,
        "total": 5954.7,
        "weights": 4692.8,
        "work": 8,
      }
    `);
  });
});

/** The terms of the llama-server profile in MiB with one decimal: what its snapshots pin. */
function serverMib(
  spec = llamaSpec(SMALL),
  config: Partial<PlanConfig> = {},
  engine: FootprintEngine = 'llama-server',
): Record<string, number> {
  const f = predictFootprint(spec, { ...base, ...config }, { engine });
  const r = (n: number): number => Math.round((n / MiB) * 10) / 10;
  return {
    total: r(f.total),
    weights: r(f.weights),
    kvCache: r(f.kvCache),
    compute: r(f.compute),
    overhead: r(f.overhead),
    anonymous: r(f.byKind.anonymous),
    fileBacked: r(f.byKind.fileBacked),
    graph: r(f.terms.computeGraph),
    work: r(f.terms.computeWork),
    runtime: r(f.terms.runtimeAnon + f.terms.runtimeFile),
    modelHost: r(f.terms.modelHost),
    kvCellHost: r(f.terms.kvCellHost),
    slotHost: r(f.terms.slotHost),
    tokenGarbage: r(f.terms.tokenGarbage),
    cells: f.terms.contextCells,
  };
}

describe('predictFootprint terms, llama-server profile (pinned)', () => {
  it('20M F16, 2048, flash attention on', () => {
    expect(serverMib()).toMatchInlineSnapshot(`
      {
        "anonymous": 24.7,
        "cells": 2048,
        "compute": 11.2,
        "fileBacked": 49.8,
        "graph": 10.1,
        "kvCache": 6,
        "kvCellHost": 0.1,
        "modelHost": 1.4,
        "overhead": 21.8,
        "runtime": 19.7,
        "slotHost": 0.5,
        "tokenGarbage": 0,
        "total": 74.6,
        "weights": 35.6,
        "work": 1,
      }
    `);
  });
  it('20M F16, 8192, flash attention off: the whole batch of attention scores and its work copy', () => {
    expect(serverMib(llamaSpec(SMALL), { contextSize: 8192, flashAttention: false }))
      .toMatchInlineSnapshot(`
        {
          "anonymous": 339.3,
          "cells": 8192,
          "compute": 306.3,
          "fileBacked": 49.8,
          "graph": 210.3,
          "kvCache": 24,
          "kvCellHost": 0.5,
          "modelHost": 1.4,
          "overhead": 23.2,
          "runtime": 19.7,
          "slotHost": 1.6,
          "tokenGarbage": 0,
          "total": 389.1,
          "weights": 35.6,
          "work": 96,
        }
      `);
  });
  it('155M Q8_0 without mmap, 4 slots of 2048', () => {
    expect(serverMib(llamaSpec(MEDIUM, 'Q8_0'), { mmap: false, parallel: 4 }))
      .toMatchInlineSnapshot(`
        {
          "anonymous": 282.3,
          "cells": 8192,
          "compute": 25.4,
          "fileBacked": 14.2,
          "graph": 23.8,
          "kvCache": 88,
          "kvCellHost": 0.5,
          "modelHost": 2.9,
          "overhead": 25.5,
          "runtime": 19.7,
          "slotHost": 2.5,
          "tokenGarbage": 0,
          "total": 296.5,
          "weights": 157.5,
          "work": 1.4,
        }
      `);
  });
  it('1B F16, 32768, q8_0 KV, two slots', () => {
    expect(
      serverMib(llamaSpec(LARGE), {
        contextSize: 32768,
        parallel: 2,
        kvCacheKeyType: 'q8_0',
        kvCacheValueType: 'q8_0',
      }),
    ).toMatchInlineSnapshot(`
      {
        "anonymous": 1468.1,
        "cells": 65536,
        "compute": 80.8,
        "fileBacked": 1939.5,
        "graph": 75.3,
        "kvCache": 1360,
        "kvCellHost": 4,
        "modelHost": 5.6,
        "overhead": 41.4,
        "runtime": 19.7,
        "slotHost": 12.1,
        "tokenGarbage": 0,
        "total": 3407.6,
        "weights": 1925.3,
        "work": 5.3,
      }
    `);
  });
  it("8B Q4_K_M at 8192, 8 slots of 1024: a 128k vocabulary's sampler state per slot", () => {
    expect(serverMib(LLAMA3_8B_Q4_K_M, { contextSize: 1024, parallel: 8 })).toMatchInlineSnapshot(`
      {
        "anonymous": 4635.2,
        "cells": 8192,
        "compute": 112.9,
        "fileBacked": 1251,
        "graph": 101,
        "kvCache": 1024,
        "kvCellHost": 0.5,
        "modelHost": 22.5,
        "overhead": 56.5,
        "runtime": 19.7,
        "slotHost": 13.8,
        "tokenGarbage": 0,
        "total": 5886.1,
        "weights": 4692.8,
        "work": 8,
      }
    `);
  });
});

describe('footprint profiles', () => {
  it('the embedded profile is the default, and is FOOTPRINT_CONSTANTS', () => {
    const spec = llamaSpec(MEDIUM);
    const cfg = { ...base, contextSize: 32768, parallel: 2, flashAttention: false };
    expect(predictFootprint(spec, cfg)).toEqual(
      predictFootprint(spec, cfg, { engine: 'embedded' }),
    );
    const C = FOOTPRINT_CONSTANTS;
    expect(FOOTPRINT_PROFILES.embedded).toMatchObject({
      runtimeAnon: C.runtimeAnon,
      runtimeFile: C.runtimeFile,
      modelHostBase: C.modelHostBase,
      modelHostPerToken: C.modelHostPerToken,
      kvCellHost: C.kvCellHost,
      tokenGarbage: true,
      slotBase: 0,
      slotPerToken: 0,
      slotPerCell: 0,
      embdTensors: { flashAttentionOn: C.embdTensors, flashAttentionOff: C.embdTensors },
      prompt: { chunk: 64, turns: true, attentionCap: 8 * MiB },
    });
  });

  it('llama-server: no Node.js runtime and no V8 token garbage, so tens of MiB less', () => {
    const spec = llamaSpec(SMALL);
    const cfg = { ...base, contextSize: 32768 };
    const server = predictFootprint(spec, cfg, { engine: 'llama-server' });
    const embedded = predictFootprint(spec, cfg);
    expect(server.terms.tokenGarbage).toBe(0);
    expect(embedded.terms.tokenGarbage).toBeGreaterThan(0);
    expect(server.terms.runtimeAnon + server.terms.runtimeFile).toBeLessThan(
      (embedded.terms.runtimeAnon + embedded.terms.runtimeFile) / 4,
    );
    // llama.cpp's own buffers are the same library's in both.
    expect(server.weights).toBe(embedded.weights);
    expect(server.kvCache).toBe(embedded.kvCache);
    expect(embedded.total - server.total).toBeGreaterThan(60 * MiB);
  });

  it('llama-server: each slot holds a sampler candidate array of 12 bytes per vocabulary entry and its tokens', () => {
    const P = FOOTPRINT_PROFILES['llama-server'];
    const spec = llamaSpec(SMALL);
    const slots = (parallel: number, contextSize = 2048) =>
      predictFootprint(spec, { ...base, contextSize, parallel }, { engine: 'llama-server' }).terms
        .slotHost;
    expect(P.slotPerToken).toBe(12);
    expect(slots(1)).toBe(Math.round(P.slotBase + 12 * spec.vocabSize + P.slotPerCell * 2048));
    expect(slots(4, 512) - slots(1)).toBe(Math.round(3 * (P.slotBase + 12 * spec.vocabSize)));
  });

  it('rejects an engine it has no profile for with PlanError', () => {
    expect(() =>
      predictFootprint(llamaSpec(SMALL), base, { engine: 'ollama' as FootprintEngine }),
    ).toThrow(PlanError);
  });
});

describe('predictFootprint', () => {
  it('KV cache: cells × layers × kv heads × head size × bytes per element (q8_0 34/32, q4_0 18/32)', () => {
    const spec = llamaSpec(SMALL); // 8 layers, 3 kv heads of 32
    expect(kvBytesPerCell(spec, 'f16', 'f16')).toBe(8 * 3 * 32 * 2 * 2);
    expect(kvBytesPerCell(spec, 'q8_0', 'q8_0')).toBe(8 * 3 * 32 * (34 / 32) * 2);
    expect(kvBytesPerCell(spec, 'q4_0', 'f16')).toBe(8 * 3 * 32 * (18 / 32 + 2));
    expect(predictFootprint(spec, { ...base, contextSize: 4096 }).kvCache).toBe(
      4096 * 8 * 3 * 32 * 4,
    );
  });

  it('pads the context to 256 cells per sequence, as node-llama-cpp and llama.cpp do', () => {
    expect(contextCells(2048, 1)).toEqual([2048, 2048]);
    expect(contextCells(2000, 1)).toEqual([2048, 2048]);
    expect(contextCells(1000, 3)).toEqual([1024, 3072]);
    expect(predictFootprint(llamaSpec(SMALL), { ...base, contextSize: 1 }).terms.contextCells).toBe(
      256,
    );
  });

  it('per-layer KV head counts are summed (layers without KV cost nothing)', () => {
    const spec = { ...llamaSpec(SMALL), headCountKvPerLayer: [3, 0, 3, 0, 3, 0, 3, 0] };
    expect(kvBytesPerCell(spec, 'f16', 'f16')).toBe(4 * 3 * 32 * 4);
  });

  it('a quantised V cache implies flash attention (the runner turns it on)', () => {
    const spec = llamaSpec(SMALL);
    const off = predictFootprint(spec, {
      ...base,
      flashAttention: false,
      kvCacheValueType: 'q8_0',
    });
    const on = predictFootprint(spec, { ...base, flashAttention: true, kvCacheValueType: 'q8_0' });
    expect(off).toEqual(on);
  });

  it('mmap moves the weights from anonymous to file-backed memory; the total stays', () => {
    const spec = llamaSpec(MEDIUM);
    const mapped = predictFootprint(spec, { ...base, mmap: true });
    const read = predictFootprint(spec, { ...base, mmap: false });
    expect(mapped.total).toBe(read.total);
    expect(read.byKind.anonymous - mapped.byKind.anonymous).toBe(spec.tensorBytes);
    expect(mapped.byKind.fileBacked - read.byKind.fileBacked).toBe(spec.tensorBytes);
  });

  it('GPU layers move weights, KV cache and compute to the GPU', () => {
    const spec = llamaSpec(LARGE);
    const cpu = predictFootprint(spec, { ...base, gpuLayers: 0 });
    const half = predictFootprint(spec, { ...base, gpuLayers: 10 });
    const all = predictFootprint(spec, { ...base, gpuLayers: 21 });
    expect(cpu.byDevice.gpus).toEqual([]);
    expect(half.byDevice.gpus[0]).toBeGreaterThan(0);
    expect(all.byDevice.gpus[0]!).toBeGreaterThan(half.byDevice.gpus[0]!);
    expect(all.total).toBeLessThan(half.total);
    expect(half.total).toBeLessThan(cpu.total);
    expect(half.total + half.byDevice.gpus[0]!).toBeGreaterThanOrEqual(cpu.total * 0.99);
  });

  it('flash attention off costs the attention matrix: far more at long contexts', () => {
    const spec = llamaSpec(SMALL);
    const on = predictFootprint(spec, { ...base, contextSize: 16384 });
    const off = predictFootprint(spec, { ...base, contextSize: 16384, flashAttention: false });
    // 16384 × 512 × 12 heads × 4 bytes of attention scores (its f16 work copy is not resident:
    // the runner unmaps freed buffers of 1 MiB and more).
    expect(off.compute - on.compute).toBeGreaterThan(16384 * 512 * 12 * 4);
  });

  it('promptChunk: only the tokens a step evaluates become resident, so chunks of 64 cost less', () => {
    const spec = llamaSpec(MEDIUM);
    const whole = predictFootprint(spec, { ...base, contextSize: 8192, flashAttention: false });
    const chunked = predictFootprint(spec, {
      ...base,
      contextSize: 8192,
      flashAttention: false,
      promptChunk: 64,
    });
    const twoSlots = predictFootprint(spec, {
      ...base,
      contextSize: 8192,
      flashAttention: false,
      promptChunk: 64,
      parallel: 2,
    });
    // At least 8192 cells × (512 − 64) tokens × 16 heads × 4 bytes of attention scores fewer.
    expect(whole.terms.computeGraph - chunked.terms.computeGraph).toBeGreaterThanOrEqual(
      8192 * (512 - 64) * 16 * 4,
    );
    // Two slots evaluate their chunks in one batch of 128.
    expect(twoSlots.terms.computeGraph).toBeGreaterThan(chunked.terms.computeGraph);
    expect(predictFootprint(spec, { ...base, promptChunk: 4096 })).toEqual(
      predictFootprint(spec, base),
    );
  });

  it('promptTurns: slots read their prompts one chunk at a time, so a step is one chunk plus a token per other slot', () => {
    const spec = llamaSpec(MEDIUM);
    const cfg = { ...base, contextSize: 2048, parallel: 4, promptChunk: 64 };
    const batched = predictFootprint(spec, cfg);
    const turns = predictFootprint(spec, { ...cfg, promptTurns: true });
    // 64 + 3 tokens per step, not 4 × 64 (nor 4 chunks of 67).
    const equivalent = predictFootprint(spec, { ...cfg, promptChunk: 67, parallel: 4 });
    expect(turns.terms.computeGraph).toBeLessThan(batched.terms.computeGraph);
    expect(turns.terms.computeGraph).toBeLessThan(equivalent.terms.computeGraph);
    const single = predictFootprint(spec, { ...cfg, parallel: 1, promptTurns: true });
    const singleBatched = predictFootprint(spec, { ...cfg, parallel: 1 });
    // One slot: nothing to take turns with.
    expect(single).toEqual(singleBatched);
  });

  it('attentionCap: the scores a step touches stop growing with the context (CPU graph, flash attention off)', () => {
    const spec = llamaSpec(SMALL);
    const cfg = { ...base, flashAttention: false, promptChunk: 64, attentionCap: 8 * MiB };
    const graph = (contextSize: number, extra = {}) =>
      predictFootprint(spec, { ...cfg, contextSize, ...extra }).terms.computeGraph;
    // 2048 cells × 64 tokens × 12 heads × 4 bytes = 6 MiB: under the cap, unchanged.
    const uncapped = predictFootprint(spec, { ...cfg, contextSize: 2048, attentionCap: undefined });
    expect(graph(2048)).toBe(uncapped.terms.computeGraph);
    // Above the cap the graph is the same at 8192 and 32768 cells (the runner shrinks its steps).
    expect(graph(8192)).toBe(graph(32768));
    expect(graph(32768)).toBeLessThan(graph(32768, { attentionCap: undefined }) - 80 * MiB);
    // Flash attention on, or the graph on a GPU: no cap applies.
    expect(graph(32768, { flashAttention: true })).toBe(
      graph(32768, { flashAttention: true, attentionCap: undefined }),
    );
    expect(graph(32768, { gpuLayers: 4 })).toBe(
      graph(32768, { gpuLayers: 4, attentionCap: undefined }),
    );
  });

  it('tokenGarbage: the token-array copies V8 has yet to collect grow with the square of the cells, up to a cap', () => {
    const C = FOOTPRINT_CONSTANTS;
    const spec = llamaSpec(SMALL);
    const garbage = (contextSize: number, parallel = 1) =>
      predictFootprint(spec, { ...base, contextSize, parallel }).terms.tokenGarbage;
    expect(garbage(32768)).toBe(Math.round(Math.min(C.tokenGarbageMax, C.tokenGarbageAt32k)));
    expect(garbage(16384)).toBe(Math.round(C.tokenGarbageAt32k / 4));
    expect(garbage(2048)).toBeLessThan(0.05 * MiB); // ~nothing at short contexts
    expect(garbage(8192, 2)).toBe(Math.round((2 * C.tokenGarbageAt32k) / 16)); // per sequence
    expect(garbage(131072)).toBe(C.tokenGarbageMax); // V8 collects in steps: bounded
  });

  it('rejects configs and specs out of range with PlanError', () => {
    const spec = llamaSpec(SMALL);
    for (const bad of [
      { contextSize: 0 },
      { parallel: 0 },
      { batchSize: 1.5 },
      { kvCacheKeyType: 'q5_1' },
      { gpuLayers: -1 },
      { contextSize: 2 ** 30 },
    ]) {
      expect(() => predictFootprint(spec, { ...base, ...(bad as Partial<PlanConfig>) })).toThrow(
        PlanError,
      );
    }
    expect(() => predictFootprint({ ...spec, layers: 0 }, base)).toThrow(/spec.layers/);
    try {
      predictFootprint(spec, { ...base, parallel: 0 });
    } catch (err) {
      expect((err as PlanError).code).toBe('PLAN_INVALID_INPUT');
    }
  });

  const shapes = fc.record({
    layers: fc.integer({ min: 1, max: 80 }),
    headDim: fc.constantFrom(32, 64, 128),
    heads: fc.constantFrom(4, 8, 16, 32, 64),
    gqa: fc.constantFrom(1, 2, 4, 8),
    ffMult: fc.double({ min: 2, max: 5, noNaN: true }),
    vocab: fc.integer({ min: 1000, max: 256_000 }),
    type: fc.constantFrom('F16' as const, 'Q8_0' as const, 'F32' as const),
  });
  const configs = fc.record({
    parallel: fc.integer({ min: 1, max: 8 }),
    batchSize: fc.constantFrom(32, 128, 256, 512, 2048),
    flashAttention: fc.boolean(),
    kvCacheKeyType: fc.constantFrom('f16' as const, 'q8_0' as const, 'q4_0' as const),
    kvCacheValueType: fc.constantFrom('f16' as const, 'q8_0' as const, 'q4_0' as const),
    mmap: fc.boolean(),
  });

  it('property: the total grows with the context and the terms add up', () => {
    fc.assert(
      fc.property(
        shapes,
        configs,
        fc.integer({ min: 1, max: 65536 }),
        fc.integer({ min: 1, max: 4096 }),
        (s, c, ctx, extra) => {
          const heads = Math.max(s.gqa, s.heads);
          const embd = heads * s.headDim;
          const spec = llamaSpec(
            {
              layers: s.layers,
              embd,
              heads,
              kvHeads: heads / s.gqa,
              ff: Math.round(embd * s.ffMult),
              vocab: s.vocab,
            },
            s.type,
          );
          const a = predictFootprint(spec, { ...c, contextSize: ctx, gpuLayers: 0 });
          const b = predictFootprint(spec, { ...c, contextSize: ctx + extra, gpuLayers: 0 });
          expect(b.total).toBeGreaterThanOrEqual(a.total);
          expect(Math.abs(a.byKind.anonymous + a.byKind.fileBacked - a.total)).toBeLessThanOrEqual(
            1,
          );
          expect(
            Math.abs(a.weights + a.kvCache + a.compute + a.overhead - a.total),
          ).toBeLessThanOrEqual(4);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('sliding-window layers (llama_kv_cache_iswa)', () => {
  const MiB = 1024 * 1024;
  const config: PlanConfig = { ...base, contextSize: 32768, parallel: 1, batchSize: 512 };
  // Per cell and layer: 16 KV heads × 128 × 2 bytes, for K and for V.
  const perLayerCell = 16 * 128 * 2 * 2;

  it('whole layers hold the context; window layers pad256(window + ubatch), +1 on the embedded runner', () => {
    const embedded = predictFootprint(GEMMA3_27B_Q4_K_M, config);
    const server = predictFootprint(GEMMA3_27B_Q4_K_M, config, { engine: 'llama-server' });
    const whole = 10 * perLayerCell * 32768;
    // node-llama-cpp asks for batch + 1 on a sliding-window model: 1024 + 513 → 1792 cells.
    expect(embedded.kvCache).toBe(whole + 52 * perLayerCell * 1792);
    expect(server.kvCache).toBe(whole + 52 * perLayerCell * 1536);
    expect(embedded.kvCache / MiB).toBeCloseTo(2560 + 728, 3);
    // All 62 layers whole would be 15.5 GiB.
    expect(server.kvCache).toBeLessThan(0.25 * 62 * perLayerCell * 32768);
  });

  it('llama-server counts its context checkpoints: the window and a cell each, per slot', () => {
    const one = predictFootprint(GEMMA3_27B_Q4_K_M, config, { engine: 'llama-server' });
    const four = predictFootprint(
      GEMMA3_27B_Q4_K_M,
      { ...config, contextSize: 8192, parallel: 4 },
      { engine: 'llama-server' },
    );
    // What llama-server's log says a checkpoint holds: the window and one cell.
    const checkpoint = 52 * perLayerCell * 1025;
    expect(one.terms.contextCheckpoints).toBe(
      FOOTPRINT_PROFILES['llama-server'].contextCheckpoints * checkpoint,
    );
    expect(four.terms.contextCheckpoints).toBe(4 * one.terms.contextCheckpoints);
    expect(predictFootprint(GEMMA3_27B_Q4_K_M, config).terms.contextCheckpoints).toBe(0);
  });

  it('a context shorter than the window: the window cache is no larger than the whole one', () => {
    const small = predictFootprint(GEMMA3_27B_Q4_K_M, { ...config, contextSize: 1024 });
    expect(small.kvCache).toBe(62 * perLayerCell * 1024);
  });

  it('a model without them is planned as before', () => {
    const { slidingWindowLayers: _, ...whole } = GEMMA3_27B_Q4_K_M;
    expect(predictFootprint(whole, config).kvCache).toBe(62 * perLayerCell * 32768);
  });
});

describe('recurrent layers (llama_memory_recurrent, llama_memory_hybrid)', () => {
  // A qwen35-like hybrid: 8 layers, every 4th with attention (2 KV heads of 64), the others a
  // gated delta net with a 1 MiB state per sequence.
  const hybrid = {
    ...llamaSpec(SMALL),
    architecture: 'qwen35',
    layers: 8,
    headCountKv: 2,
    headDimK: 64,
    headDimV: 64,
    recurrentLayers: [true, true, true, false, true, true, true, false],
    recurrentStateBytes: 6 * (1 << 20),
  };
  const config: PlanConfig = { ...base, contextSize: 4096, parallel: 2 };

  it('a KV cache in the attention layers only, and one state per sequence', () => {
    const f = predictFootprint(hybrid, config);
    const [, cells] = contextCells(4096, 2);
    expect(f.kvCache).toBe(cells * 2 * (2 * 64 * 2 * 2) + 2 * 6 * (1 << 20));
  });

  it("llama-server's checkpoints copy the state, per slot", () => {
    const f = predictFootprint(hybrid, config, { engine: 'llama-server' });
    expect(f.terms.contextCheckpoints).toBe(
      FOOTPRINT_PROFILES['llama-server'].contextCheckpoints * 2 * 6 * (1 << 20),
    );
  });
});
