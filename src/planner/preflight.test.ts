import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fitConfig } from './fit.js';
import { predictFootprint, type PlanConfig } from './footprint.js';
import {
  formatGB,
  hardwareFromSnapshot,
  minimumConfig,
  preflight,
  type PreflightHardware,
} from './preflight.js';
import { LARGE, MEDIUM, llamaSpec } from './test-specs.js';

const GiB = 1024 ** 3;
const large = { ...llamaSpec(LARGE), name: 'test-1B' };
const config: PlanConfig = {
  contextSize: 32768,
  parallel: 1,
  batchSize: 512,
  flashAttention: true,
  kvCacheKeyType: 'f16',
  kvCacheValueType: 'f16',
  gpuLayers: 0,
  mmap: true,
};
const needs = predictFootprint(large, config).total;
const roomy: PreflightHardware = { totalRam: 64 * GiB, available: 48 * GiB, gpus: [] };

describe('preflight', () => {
  it('ok when the config fits with room to spare', () => {
    const r = preflight({ spec: large, config, hardware: roomy, budget: 32 * GiB });
    expect(r).toMatchObject({ verdict: 'ok', reasons: [], guidance: [], alternatives: [], needs });
    expect(r.message).toBe(`fits: needs ${formatGB(needs)}`);
  });

  it('refuses when the machine is below the model minimum', () => {
    const r = preflight({
      spec: large,
      config,
      hardware: { totalRam: 2 * GiB, available: 1.5 * GiB, gpus: [] },
    });
    expect(r.verdict).toBe('refuse');
    expect(r.causes).toContain('total-ram-minimum');
    expect(r.reasons[0]).toMatch(
      /^test-1B needs a machine with at least \d+\.\d GB of memory, even at its smallest settings; this one has 2\.1 GB$/,
    );
    expect(r.guidance).toContain('use a smaller model or a smaller quantisation of it');
    expect(r.alternatives).toEqual([]);
  });

  it('warns when the machine is below the recommended size for these settings', () => {
    const total = needs + 1 * GiB;
    const r = preflight({
      spec: large,
      config,
      hardware: { totalRam: total, available: total - 0.2 * GiB, gpus: [] },
    });
    expect(r.verdict).toBe('warn');
    expect(r.causes[0]).toBe('total-ram-recommended');
    expect(r.reasons[0]).toBe(
      `${formatGB(needs + 2 * GiB)} of memory is recommended for test-1B with these settings; this machine has ${formatGB(total)}`,
    );
  });

  it('refuses when too little memory is available, with a context that fits and the variant that fits', () => {
    const available = needs - 1 * GiB;
    const variants = [{ name: 'Q8_0', spec: llamaSpec(LARGE, 'Q8_0') }];
    const r = preflight({
      spec: large,
      config,
      hardware: { ...roomy, available },
      variants,
      level: 'basic',
    });
    expect(r.verdict).toBe('refuse');
    expect(r.causes).toEqual(['available']);
    expect(r.reasons).toEqual([`needs ${formatGB(needs)}, ${formatGB(available)} available`]);
    expect(r.guidance[0]).toBe(`close other applications to free ${formatGB(needs - available)}`);
    const ctx = r.alternatives[0]!.config.contextSize;
    expect(ctx).toBeLessThan(32768);
    expect(r.alternatives[0]!.footprint.total).toBeLessThanOrEqual(available);
    expect(r.guidance[1]).toBe(`use context ${ctx}, which fits`);
    expect(r.guidance[2]).toBe('or the Q8_0 variant');
    expect(r.alternatives[1]?.variant).toBe('Q8_0');
    expect(r.message).toBe(
      `needs ${formatGB(needs)}, ${formatGB(available)} available: close other applications to free ${formatGB(needs - available)}, or use context ${ctx}, which fits, or the Q8_0 variant`,
    );
  });

  it('offers quantised KV caches as alternatives at higher levels', () => {
    const available = predictFootprint(large, { ...config, contextSize: 8192 }).total;
    const r = preflight({ spec: large, config, hardware: { ...roomy, available } });
    const kinds = r.alternatives.map((a) => a.config.kvCacheKeyType);
    expect(kinds).toEqual(['f16', 'q8_0', 'q4_0']);
    expect(r.guidance).toContain(
      `use context ${r.alternatives[1]!.config.contextSize} with a q8_0 KV cache, which fits`,
    );
  });

  it('refuses above the cgroup limit', () => {
    const r = preflight({
      spec: large,
      config,
      hardware: { ...roomy, cgroupLimit: 4 * GiB, cgroupUsage: 1 * GiB },
    });
    expect(r.verdict).toBe('refuse');
    expect(r.causes).toEqual(['cgroup']);
    expect(r.reasons[0]).toBe(
      `needs ${formatGB(needs)}, the memory limit of headroom's cgroup leaves 3.2 GB (limit 4.3 GB, 1.1 GB in use)`,
    );
    expect(r.guidance[0]).toBe(
      'raise the container or service memory limit (docker --memory, systemd MemoryMax)',
    );
    expect(r.room).toBe(3 * GiB);
    for (const a of r.alternatives) expect(a.footprint.total).toBeLessThanOrEqual(3 * GiB);
  });

  it('refuses above the model budget', () => {
    const r = preflight({ spec: large, config, hardware: roomy, budget: 2 * GiB });
    expect(r.verdict).toBe('refuse');
    expect(r.causes).toEqual(['budget']);
    expect(r.reasons[0]).toBe(`needs ${formatGB(needs)}, the model budget leaves 2.1 GB`);
    expect(r.guidance[0]).toBe(
      'raise the budget (config "budget" or --budget), or unload other models',
    );
  });

  it('says when no setting of the model fits the room', () => {
    const r = preflight({ spec: large, config, hardware: roomy, budget: 1 * GiB });
    expect(r.alternatives).toEqual([]);
    expect(r.guidance.at(-1)).toBe(
      'no smaller setting of this model fits now: free memory or use a smaller model',
    );
  });

  it('refuses when the offloaded layers exceed the GPU memory, naming the layers that fit', () => {
    const gpuConfig = { ...config, contextSize: 4096, gpuLayers: LARGE.layers + 1 };
    const onGpu = predictFootprint(large, gpuConfig).byDevice.gpus[0]!;
    const free = onGpu / 2;
    const r = preflight({
      spec: large,
      config: gpuConfig,
      hardware: { ...roomy, gpus: [{ free, name: 'Test GPU' }] },
    });
    expect(r.verdict).toBe('refuse');
    expect(r.causes).toEqual(['gpu']);
    expect(r.reasons[0]).toBe(
      `needs ${formatGB(onGpu)} on GPU 0 (Test GPU), ${formatGB(free)} free`,
    );
    const m = /^offload fewer layers: gpuLayers (\d+) fits$/.exec(r.guidance[0]!);
    expect(m).not.toBeNull();
    const layers = Number(m![1]);
    expect(
      predictFootprint(large, { ...gpuConfig, gpuLayers: layers }).byDevice.gpus[0],
    ).toBeLessThanOrEqual(free);
    expect(
      predictFootprint(large, { ...gpuConfig, gpuLayers: layers + 1 }).byDevice.gpus[0],
    ).toBeGreaterThan(free);
    const none = preflight({ spec: large, config: gpuConfig, hardware: roomy });
    expect(none.reasons[0]).toMatch(/^offloads .* to GPU 0, which this machine does not have$/);
    expect(none.guidance[0]).toBe('run on the CPU (gpuLayers 0)');
  });

  it('warns when the config fits only tightly', () => {
    const r = preflight({ spec: large, config, hardware: { ...roomy, available: needs / 0.95 } });
    expect(r.verdict).toBe('warn');
    expect(r.causes).toEqual(['tight']);
    expect(r.reasons[0]).toMatch(
      /^needs .* of the .* there is room for: little is left for other programs$/,
    );
  });

  it('reads a monitor snapshot (unified-memory GPUs are not planned against)', () => {
    const h = hardwareFromSnapshot({
      platform: 'linux',
      takenAt: 0,
      totalRam: 16 * GiB,
      available: 10 * GiB,
      swapTotal: 0,
      swapFree: 0,
      cores: 2,
      cgroup: {
        version: 2,
        path: '/x',
        limit: 8 * GiB,
        usage: 3 * GiB,
        workingSet: 2 * GiB,
        anon: 0,
        file: 0,
      } as never,
      gpus: [
        { index: 0, name: 'A', total: 8 * GiB, free: 6 * GiB, source: 'nvidia-smi' },
        {
          index: 1,
          name: 'M',
          total: 8 * GiB,
          free: 6 * GiB,
          source: 'node-llama-cpp',
          unified: true,
        },
      ],
    });
    expect(h).toEqual({
      totalRam: 16 * GiB,
      available: 10 * GiB,
      cgroupLimit: 8 * GiB,
      cgroupUsage: 2 * GiB,
      gpus: [{ free: 6 * GiB, total: 8 * GiB, name: 'A' }],
    });
  });

  it('property: the fit for the room is never refused on a machine above the minimum; refusal means nothing fits', () => {
    const spec = llamaSpec(MEDIUM);
    const minimum = predictFootprint(spec, minimumConfig(spec)).total;
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 4 * GiB, noNaN: true }),
        fc.double({ min: 0, max: 4 * GiB, noNaN: true }),
        (available, budget) => {
          const hardware = { totalRam: 64 * GiB, available, gpus: [] };
          const room = Math.min(available, budget);
          const fit = fitConfig(spec, { budgetBytes: room, level: 'maximum' });
          const r = preflight({
            spec,
            config: fit?.config ?? minimumConfig(spec),
            hardware,
            budget,
          });
          if (fit) expect(r.verdict).not.toBe('refuse');
          else {
            expect(r.verdict).toBe('refuse');
            expect(minimum).toBeGreaterThan(room);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
