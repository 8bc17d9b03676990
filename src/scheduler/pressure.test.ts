import { describe, expect, it } from 'vitest';
import type { RunnerConfig } from '../engines/types.js';
import {
  adjustLoad,
  describePolicy,
  loadPolicyFor,
  NORMAL_LOAD_POLICY,
  samePolicy,
  type PressureReport,
} from './pressure.js';

const report = (over: Partial<PressureReport>): PressureReport => ({
  level: 'low',
  excessBytes: 0,
  throttled: false,
  reasons: [],
  sampledAt: 0,
  ...over,
});

describe('loadPolicyFor', () => {
  it('low: as planned; medium and high: one and two steps smaller; critical: refused with guidance', () => {
    expect(loadPolicyFor(report({}))).toEqual(NORMAL_LOAD_POLICY);
    expect(loadPolicyFor(report({ level: 'medium', reasons: ['available 15%'] }))).toMatchObject({
      shrinkSteps: 1,
      reasons: ['memory pressure medium (available 15%)'],
    });
    expect(loadPolicyFor(report({ level: 'high' })).shrinkSteps).toBe(2);
    const critical = loadPolicyFor(report({ level: 'critical' }));
    expect(critical.refuse?.message).toMatch(/not loaded while memory pressure is critical/);
    expect(critical.refuse?.guidance.join(' ')).toMatch(/headroom unload/);
    expect(critical.refuse?.retryAfterSeconds).toBeGreaterThan(0);
    expect(describePolicy(critical)).toBe('refused');
  });

  it('thermal throttling: half the batch and a thread fewer, at any level', () => {
    const p = loadPolicyFor(report({ throttled: true }));
    expect(p).toMatchObject({ batchScale: 0.5, threadsLess: 1, shrinkSteps: 0 });
    expect(p.reasons).toEqual(['CPU thermal throttling']);
    expect(samePolicy(p, NORMAL_LOAD_POLICY)).toBe(false);
    expect(
      samePolicy(
        loadPolicyFor(report({ level: 'high', reasons: ['x'] })),
        loadPolicyFor(report({ level: 'high' })),
      ),
    ).toBe(true);
  });
});

describe('adjustLoad', () => {
  const base: RunnerConfig = {
    contextSize: 8192,
    parallel: 1,
    batchSize: 512,
    threads: 2,
    flashAttention: true,
    kvCacheKeyType: 'f16',
    kvCacheValueType: 'f16',
    mmap: true,
    gpuLayers: 0,
    modelPath: '/m.gguf',
  };

  it('quantises the KV cache first, then halves the context, and keeps other fields', () => {
    expect(adjustLoad(base, { ...NORMAL_LOAD_POLICY, shrinkSteps: 1 })).toEqual({
      ...base,
      kvCacheKeyType: 'q8_0',
      kvCacheValueType: 'q8_0',
    });
    expect(adjustLoad(base, { ...NORMAL_LOAD_POLICY, shrinkSteps: 3 })).toMatchObject({
      kvCacheValueType: 'q4_0',
      contextSize: 4096,
    });
    // Without flash attention a quantised V cache fails to load: halve the context instead.
    expect(
      adjustLoad({ ...base, flashAttention: false }, { ...NORMAL_LOAD_POLICY, shrinkSteps: 2 }),
    ).toMatchObject({ kvCacheValueType: 'f16', contextSize: 2048 });
    // A KV type the request named is kept.
    expect(
      adjustLoad(base, { ...NORMAL_LOAD_POLICY, shrinkSteps: 1 }, { keepKv: true }),
    ).toMatchObject({ kvCacheValueType: 'f16', contextSize: 4096 });
  });

  it('applies the thermal settings with floors, and never makes a small config larger', () => {
    expect(
      adjustLoad(
        { ...base, threads: 1, batchSize: 48 },
        { ...NORMAL_LOAD_POLICY, batchScale: 0.5, threadsLess: 1 },
      ),
    ).toMatchObject({ threads: 1, batchSize: 32 });
    expect(
      adjustLoad(
        { ...base, contextSize: 256, batchSize: 16, flashAttention: false },
        { ...NORMAL_LOAD_POLICY, shrinkSteps: 1, batchScale: 0.5 },
      ),
    ).toMatchObject({ contextSize: 256, batchSize: 16 });
    expect(adjustLoad(base, NORMAL_LOAD_POLICY)).toEqual(base);
  });
});
