import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  adjustLoad,
  decideReactions,
  NORMAL_LOAD_POLICY,
  type ReactionModel,
} from './reactions.js';
import type { PressureLevel } from './pressure.js';

const MiB = 1024 * 1024;
const model = (name: string, over: Partial<ReactionModel> = {}): ReactionModel => ({
  name,
  state: 'ready',
  inFlight: 0,
  lastUsedAt: 0,
  bytes: 100 * MiB,
  ...over,
});

const unloads = (p: ReturnType<typeof decideReactions>): string[] =>
  p.actions.flatMap((a) => (a.type === 'unload' ? [a.model] : []));

describe('decideReactions', () => {
  const models = [
    model('old', { lastUsedAt: 1 }),
    model('busy', { lastUsedAt: 0, inFlight: 2 }),
    model('newer', { lastUsedAt: 5 }),
    model('pinned', { lastUsedAt: 0, pinned: true }),
    model('loading', { state: 'loading', lastUsedAt: 0 }),
  ];

  it('does nothing at low', () => {
    expect(decideReactions({ level: 'low', throttled: false, models, excessBytes: 0 })).toEqual({
      policy: NORMAL_LOAD_POLICY,
      actions: [],
    });
  });

  it('medium: new loads one step smaller and prompt caches trimmed, nothing unloaded', () => {
    const p = decideReactions({
      level: 'medium',
      throttled: false,
      models,
      excessBytes: 0,
      reasons: ['available 15.0% < medium 16.7%'],
    });
    expect(p.policy).toMatchObject({ level: 'medium', shrinkSteps: 1 });
    expect(p.policy.refuse).toBeUndefined();
    expect(p.actions).toEqual([
      { type: 'trim-prompt-caches', reason: 'pressure medium (available 15.0% < medium 16.7%)' },
    ]);
  });

  it('high: unloads idle unpinned models least recently used first until the excess is covered', () => {
    const one = decideReactions({ level: 'high', throttled: false, models, excessBytes: 50 * MiB });
    expect(unloads(one)).toEqual(['old']);
    expect(one.actions.find((a) => a.type === 'unload')).toMatchObject({ bytes: 100 * MiB });
    const two = decideReactions({
      level: 'high',
      throttled: false,
      models,
      excessBytes: 150 * MiB,
    });
    expect(unloads(two)).toEqual(['old', 'newer']);
    // Never the busy, pinned or loading one, however large the excess.
    const all = decideReactions({ level: 'high', throttled: false, models, excessBytes: 10e9 });
    expect(unloads(all)).toEqual(['old', 'newer']);
    expect(all.policy.refuse).toBeUndefined();
  });

  it('high: bytes of models already stopping count as freed', () => {
    const p = decideReactions({
      level: 'high',
      throttled: false,
      models: [...models, model('going', { state: 'stopping', bytes: 120 * MiB })],
      excessBytes: 150 * MiB,
    });
    expect(unloads(p)).toEqual(['old']);
  });

  it('critical: refuses loads with guidance, unloads every idle unpinned model, pinned ones only when needed', () => {
    const p = decideReactions({ level: 'critical', throttled: false, models, excessBytes: 0 });
    expect(p.policy.refuse?.message).toMatch(/not loaded while memory pressure is critical/);
    expect(p.policy.refuse?.message).toMatch(/headroom unload/);
    expect(p.policy.refuse?.retryAfterSeconds).toBeGreaterThan(0);
    expect(unloads(p)).toEqual(['old', 'newer']);
    const more = decideReactions({
      level: 'critical',
      throttled: false,
      models,
      excessBytes: 250 * MiB,
    });
    expect(unloads(more)).toEqual(['old', 'newer', 'pinned']);
    expect(more.actions.some((a) => a.type === 'cancel-request')).toBe(false);
  });

  it('critical with cancelOnCritical: cancels the lowest-priority request only when unloading is not enough', () => {
    const busy = [
      model('a', { inFlight: 1, priority: 5, bytes: 500 * MiB }),
      model('b', { inFlight: 1, priority: 1, bytes: 100 * MiB }),
      model('idle'),
    ];
    const p = decideReactions({
      level: 'critical',
      throttled: false,
      models: busy,
      excessBytes: 300 * MiB,
      cancelOnCritical: true,
    });
    expect(p.actions.filter((a) => a.type !== 'trim-prompt-caches')).toEqual([
      expect.objectContaining({ type: 'unload', model: 'idle' }),
      expect.objectContaining({ type: 'cancel-request', model: 'b' }),
    ]);
    const enough = decideReactions({
      level: 'critical',
      throttled: false,
      models: busy,
      excessBytes: 50 * MiB,
      cancelOnCritical: true,
    });
    expect(enough.actions.some((a) => a.type === 'cancel-request')).toBe(false);
  });

  it('thermal throttling: half the batch and a thread fewer for new loads, at any level', () => {
    const p = decideReactions({ level: 'low', throttled: true, models, excessBytes: 0 });
    expect(p.policy).toMatchObject({ batchScale: 0.5, threadsLess: 1, shrinkSteps: 0 });
    expect(p.policy.reasons).toEqual(['CPU thermal throttling']);
    expect(p.actions).toEqual([]);
  });

  it('never unloads a model with requests in flight or one that is not ready (property)', () => {
    const arbModel = fc.record({
      name: fc.string({ minLength: 1, maxLength: 4 }),
      state: fc.constantFrom('ready', 'loading', 'draining', 'stopping', 'unloaded', 'failed'),
      inFlight: fc.nat(3),
      lastUsedAt: fc.nat(100),
      pinned: fc.boolean(),
      bytes: fc.nat(1000 * MiB),
    });
    fc.assert(
      fc.property(
        fc.constantFrom<PressureLevel>('low', 'medium', 'high', 'critical'),
        fc.array(arbModel, { maxLength: 8 }),
        fc.nat(4000 * MiB),
        (level, ms, excess) => {
          const p = decideReactions({ level, throttled: false, models: ms, excessBytes: excess });
          for (const name of unloads(p)) {
            const m = ms.find((x) => x.name === name)!;
            expect(m.state).toBe('ready');
            expect(ms.some((x) => x.name === name && x.inFlight === 0)).toBe(true);
          }
          if (level === 'low' || level === 'medium') expect(unloads(p)).toEqual([]);
        },
      ),
    );
  });
});

describe('adjustLoad', () => {
  const base = {
    contextSize: 8192,
    batchSize: 512,
    threads: 2,
    flashAttention: true,
    kvCacheKeyType: 'f16' as const,
    kvCacheValueType: 'f16' as const,
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
  });

  it('applies the thermal settings with floors', () => {
    expect(
      adjustLoad(
        { ...base, threads: 1, batchSize: 48 },
        { ...NORMAL_LOAD_POLICY, batchScale: 0.5, threadsLess: 1 },
      ),
    ).toMatchObject({ threads: 1, batchSize: 32 });
    expect(adjustLoad(base, NORMAL_LOAD_POLICY)).toEqual(base);
  });
});
