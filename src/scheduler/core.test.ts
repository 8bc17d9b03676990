import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { KvCacheType, RunnerConfig } from '../engines/types.js';
import type { PressureLevel } from '../monitor/pressure.js';
import {
  SchedulerCore,
  chooseVictims,
  compatible,
  computeBudget,
  computeGpuBudget,
  type CancelOrder,
  type CoreNote,
  type CoreSettings,
  type ModelPolicy,
  type Needs,
  type PlanOutcome,
  type Rejection,
  type StopOrder,
  type TrimOrder,
} from './core.js';
import { adjustLoad, loadPolicyFor, type PressureReport } from './pressure.js';

const MiB = 1024 * 1024;

function config(contextSize: number, parallel = 1, kv: KvCacheType = 'f16'): RunnerConfig {
  return {
    modelPath: '/m.gguf',
    contextSize,
    parallel,
    threads: 2,
    batchSize: 64,
    flashAttention: true,
    kvCacheKeyType: kv,
    kvCacheValueType: kv,
    mmap: true,
    gpuLayers: 0,
  };
}

/** What a KV cache of each type weighs against f16 in `sizePlan`. */
const KV_WEIGHT: Record<KvCacheType, number> = { f16: 1, q8_0: 0.5, q4_0: 0.25 };

/**
 * Plan by size: full context when it fits, half the context at 60 % when only that fits; the
 * context's share of the bytes shrinks with a quantised KV type (`needs.kv`, kept as asked). GPU
 * bytes (`gpu[model]`, by device) are planned as given, whatever the GPU room: the core must
 * check every device itself.
 */
function sizePlan(sizes: Record<string, number>, parallel = 1, gpu: Record<string, number[]> = {}) {
  return (model: string, needs: Needs, room: number): PlanOutcome => {
    const ctx = needs.contextSize ?? 2048;
    const kv = needs.kv ?? 'f16';
    const full = Math.round((sizes[model] ?? 100 * MiB) * (1 + (ctx / 8192) * KV_WEIGHT[kv]));
    const g = gpu[model] ? { gpuBytes: [...gpu[model]] } : {};
    if (full <= room) return { fits: true, config: config(ctx, parallel, kv), bytes: full, ...g };
    const degraded = Math.round(full * 0.6);
    if (degraded <= room)
      return {
        fits: true,
        config: config(ctx / 2, parallel, kv),
        bytes: degraded,
        degraded: true,
        ...g,
      };
    return { fits: false, message: `${model} does not fit`, guidance: ['free memory'] };
  };
}

const baseSettings: CoreSettings = {
  budgetBytes: 1000 * MiB,
  maxLoadedModels: Number.POSITIVE_INFINITY,
  maxQueue: 4,
  maxWaitMs: 10_000,
  drainDeadlineMs: 5000,
  backoffBaseMs: 1000,
  backoffMaxMs: 30_000,
};

/** A recording world around the core: effects are logged and the test plays the runners. */
function recorder(opts: {
  sizes: Record<string, number>;
  /** Bytes each model plans on each GPU. */
  gpu?: Record<string, number[]>;
  settings?: Partial<CoreSettings>;
  policy?: (m: string) => ModelPolicy;
  parallel?: number;
}) {
  let now = 0;
  const events: string[] = [];
  const grants = new Map<number, number>();
  const rejects = new Map<number, Rejection>();
  const loads: Array<{
    instance: number;
    model: string;
    bytes: number;
    gpuBytes: number[];
    contextSize: number;
  }> = [];
  const stops: StopOrder[] = [];
  const trims: TrimOrder[] = [];
  const cancels: CancelOrder[] = [];
  const notes: CoreNote[] = [];
  const configs: RunnerConfig[] = [];
  const core = new SchedulerCore({
    settings: { ...baseSettings, ...opts.settings },
    plan: sizePlan(opts.sizes, opts.parallel, opts.gpu),
    policy: opts.policy ?? (() => ({ pinned: false, ttlMs: 60_000 })),
    now: () => now,
    effects: {
      startLoad: (o) => {
        loads.push({
          instance: o.instance,
          model: o.model,
          bytes: o.bytes,
          gpuBytes: o.gpuBytes,
          contextSize: o.config.contextSize,
        });
        configs.push(o.config);
        events.push(`load ${o.model}#${o.instance}`);
      },
      grant: (r, i) => {
        grants.set(r, i);
        events.push(`grant ${r}->#${i}`);
      },
      reject: (r, rej) => {
        rejects.set(r, rej);
        events.push(`reject ${r} ${rej.kind}`);
      },
      stop: (o) => {
        stops.push(o);
        events.push(`stop ${o.model}#${o.instance} ${o.reason}`);
      },
      trim: (o) => void trims.push(o),
      cancelRequest: (o) => void cancels.push(o),
      note: (n) => void notes.push(n),
    },
  });
  return {
    core,
    events,
    grants,
    rejects,
    loads,
    stops,
    trims,
    cancels,
    notes,
    configs,
    /** A monitor reading taken now (or `sampledAt`), with `excessMiB` to free. */
    pressure: (level: PressureLevel, excessMiB = 0, more: Partial<PressureReport> = {}) =>
      core.pressure({
        level,
        excessBytes: excessMiB * MiB,
        throttled: false,
        reasons: [],
        sampledAt: now,
        ...more,
      }),
    advance: (ms: number) => {
      now += ms;
      core.tick();
    },
    get now() {
      return now;
    },
  };
}

describe('computeBudget', () => {
  it('takes the smallest limit minus the reserve, never below zero', () => {
    expect(computeBudget({ totalRam: 1000, fraction: 0.8, reserve: 100 })).toBe(700);
    expect(computeBudget({ totalRam: 1000, fraction: 0.8, cgroupLimit: 500, reserve: 100 })).toBe(
      400,
    );
    expect(computeBudget({ totalRam: 1000, fraction: 1, cap: 300, reserve: 0 })).toBe(300);
    expect(computeBudget({ totalRam: 1000, fraction: 1, cap: 50, reserve: 100 })).toBe(0);
  });
});

describe('computeGpuBudget', () => {
  it('takes the smallest of VRAM × fraction, free + held and the cap, minus the reserve', () => {
    expect(computeGpuBudget({ total: 1000, fraction: 0.9, reserve: 100 })).toBe(800);
    // Another process holds 400 of 1000: only the free 600 (plus what our runners hold) is ours.
    expect(computeGpuBudget({ total: 1000, free: 600, fraction: 0.9, reserve: 100 })).toBe(500);
    expect(
      computeGpuBudget({ total: 1000, free: 600, held: 200, fraction: 0.9, reserve: 100 }),
    ).toBe(700);
    expect(computeGpuBudget({ total: 1000, fraction: 1, cap: 300, reserve: 0 })).toBe(300);
    expect(computeGpuBudget({ total: 1000, fraction: 1, cap: 50, reserve: 100 })).toBe(0);
  });
});

describe('chooseVictims', () => {
  it('while only a GPU is short, counts only candidates that hold memory on it', () => {
    const c = [
      { instance: 1, charge: 500, lastUsedAt: 0, reloadCostMs: 100 }, // most idle, RAM only
      { instance: 2, charge: 100, gpus: [0, 300], lastUsedAt: 100, reloadCostMs: 100 },
      { instance: 3, charge: 100, gpus: [300], lastUsedAt: 200, reloadCostMs: 100 },
    ];
    expect(chooseVictims(c, 0, 0, 1000, [200])).toEqual([3]);
    expect(chooseVictims(c, 0, 0, 1000, [200, 200])).toEqual([2, 3]);
    expect(chooseVictims(c, 0, 0, 1000, [400])).toBe(undefined);
    // RAM short too: the RAM-only model counts again.
    expect(chooseVictims(c, 400, 0, 1000, [200])).toEqual([1, 3]);
    // No GPU deficit: the RAM-only rule, unchanged.
    expect(chooseVictims(c, 50, 0, 1000, [0])).toEqual([1]);
  });

  it('evicts the least recently used first', () => {
    const c = [
      { instance: 1, charge: 100, lastUsedAt: 500, reloadCostMs: 100 },
      { instance: 2, charge: 100, lastUsedAt: 100, reloadCostMs: 100 },
    ];
    expect(chooseVictims(c, 50, 0, 1000)).toEqual([2]);
  });
  it('keeps a model that is expensive to reload over a cheap one idle a little longer', () => {
    const c = [
      { instance: 1, charge: 100, lastUsedAt: 0, reloadCostMs: 100 }, // idle 10 s, cheap
      { instance: 2, charge: 100, lastUsedAt: -2000, reloadCostMs: 30_000 }, // idle 12 s, slow
    ];
    expect(chooseVictims(c, 50, 0, 10_000)).toEqual([1]);
  });
  it('returns undefined when all candidates are not enough', () => {
    expect(
      chooseVictims([{ instance: 1, charge: 10, lastUsedAt: 0, reloadCostMs: 0 }], 50, 0, 1),
    ).toBe(undefined);
  });
});

describe('compatible', () => {
  it('reuses a larger context and never reloads for a smaller one', () => {
    expect(compatible(config(8192), 8192, { contextSize: 2048 })).toBe(true);
    expect(compatible(config(2048), 2048, { contextSize: 4096 })).toBe(false);
    expect(compatible(config(2048), 4096, { contextSize: 4096 })).toBe(true); // degraded plan
    expect(compatible(config(2048), 2048, { kv: 'q8_0' })).toBe(false);
  });
});

describe('SchedulerCore', () => {
  it('single-flight: concurrent requests share one load and are granted in FIFO order', () => {
    const w = recorder({ sizes: { a: 100 * MiB }, parallel: 2 });
    w.core.request(1, 'a');
    w.core.request(2, 'a');
    w.core.request(3, 'a');
    expect(w.loads).toHaveLength(1);
    w.core.loadSucceeded(w.loads[0]!.instance, { loadMs: 50 });
    expect([...w.grants.keys()]).toEqual([1, 2]); // two slots
    w.core.release(1);
    expect([...w.grants.keys()]).toEqual([1, 2, 3]);
  });

  it('a failed load fails every waiter with its reason; the next request tries again', () => {
    const w = recorder({ sizes: { a: 100 * MiB } });
    w.core.request(1, 'a');
    w.core.request(2, 'a');
    w.core.loadFailed(w.loads[0]!.instance, 'bad file');
    expect(w.rejects.get(1)).toMatchObject({ kind: 'load_failed' });
    expect(w.rejects.get(2)?.message).toContain('bad file');
    w.core.request(3, 'a');
    expect(w.loads).toHaveLength(2);
  });

  it('backs off a model that keeps failing', () => {
    const w = recorder({ sizes: { a: 100 * MiB } });
    w.core.request(1, 'a');
    w.core.loadFailed(w.loads[0]!.instance, 'x');
    w.core.request(2, 'a');
    w.core.loadFailed(w.loads[1]!.instance, 'x');
    w.core.request(3, 'a');
    expect(w.loads).toHaveLength(2);
    expect(w.rejects.get(3)).toMatchObject({ kind: 'backoff', retryAfterSeconds: 1 });
    w.advance(1000);
    w.core.request(4, 'a');
    expect(w.loads).toHaveLength(3);
  });

  it('evicts the idle LRU model for room and loads once it has exited', () => {
    const w = recorder({ sizes: { a: 300 * MiB, b: 300 * MiB, c: 300 * MiB } });
    for (const [id, m] of [
      [1, 'a'],
      [2, 'b'],
    ] as const) {
      w.core.request(id, m);
      w.core.loadSucceeded(w.loads.at(-1)!.instance, { loadMs: 10 });
      w.advance(100);
      w.core.release(id);
    }
    w.advance(100);
    w.core.request(3, 'c'); // 375 MiB each: c does not fit beside a and b
    expect(w.stops.map((s) => [s.model, s.reason])).toEqual([['a', 'evicted']]);
    expect(w.loads).toHaveLength(2); // waits for a's exit
    w.core.exited(w.stops[0]!.instance);
    expect(w.loads.at(-1)!.model).toBe('c');
  });

  it('never evicts a model with requests in flight; waits for it instead', () => {
    const w = recorder({ sizes: { a: 600 * MiB, b: 600 * MiB } });
    w.core.request(1, 'a');
    w.core.loadSucceeded(w.loads[0]!.instance, { loadMs: 10 });
    w.core.request(2, 'b');
    expect(w.stops).toHaveLength(0);
    expect(w.rejects.size).toBe(0);
    w.core.release(1);
    expect(w.stops.map((s) => s.reason)).toEqual(['evicted']);
  });

  it('refuses with guidance when nothing fits even degraded', () => {
    const w = recorder({ sizes: { huge: 5000 * MiB } });
    w.core.request(1, 'huge');
    expect(w.rejects.get(1)).toMatchObject({ kind: 'no_fit', guidance: ['free memory'] });
  });

  it('degrades when only a smaller context fits, and reuses it for the same request', () => {
    const w = recorder({ sizes: { a: 600 * MiB } });
    w.core.request(1, 'a', { contextSize: 8192 }); // full: 1200 MiB > budget; degraded fits
    expect(w.loads[0]).toMatchObject({ contextSize: 4096 });
    w.core.loadSucceeded(w.loads[0]!.instance, { loadMs: 10 });
    expect(w.grants.has(1)).toBe(true);
    w.core.release(1);
    w.core.request(2, 'a', { contextSize: 8192 });
    expect(w.grants.has(2)).toBe(true);
    expect(w.loads).toHaveLength(1);
  });

  it('drains on unload: stops when the last request ends, or at the deadline', () => {
    const w = recorder({ sizes: { a: 100 * MiB } });
    w.core.request(1, 'a');
    w.core.loadSucceeded(w.loads[0]!.instance, { loadMs: 10 });
    w.core.unload('a');
    expect(w.stops).toHaveLength(0);
    w.advance(4999);
    expect(w.stops).toHaveLength(0);
    w.advance(1);
    expect(w.stops[0]).toMatchObject({ reason: 'drain-deadline', inFlight: 1 });
  });

  it('idle TTL: per-request keep_alive wins over the policy; null means never', () => {
    const w = recorder({ sizes: { a: 100 * MiB } });
    w.core.request(1, 'a', {}, { keepAliveMs: 2000 });
    w.core.loadSucceeded(w.loads[0]!.instance, { loadMs: 10 });
    w.core.release(1);
    w.advance(1999);
    expect(w.stops).toHaveLength(0);
    w.advance(1);
    expect(w.stops[0]).toMatchObject({ reason: 'ttl' });
    w.core.exited(w.stops[0]!.instance);
    w.core.request(2, 'a', {}, { keepAliveMs: null });
    w.core.loadSucceeded(w.loads[1]!.instance, { loadMs: 10 });
    w.core.release(2);
    w.advance(10 * 60_000);
    expect(w.stops).toHaveLength(1);
  });

  it('recycle: an idle runner grown past its plan is stopped after enough requests; the next request loads it again', () => {
    const recycle = { growthBytes: 50 * MiB, fraction: 0.25, minRequests: 3 };
    const w = recorder({ sizes: { a: 100 * MiB }, settings: { recycle } });
    w.core.request(1, 'a');
    const a = w.loads[0]!.instance;
    w.core.loadSucceeded(a, { loadMs: 10 });
    const planned = w.loads[0]!.bytes; // 125 MiB: 100 MiB × (1 + 2048 / 8192)
    w.core.release(1);
    // Grown 60 MiB (more than the 50 allowed), but only 1 request served: kept.
    w.core.measured(a, { charge: planned + 60 * MiB, rss: planned + 60 * MiB });
    for (const id of [2, 3]) {
      w.core.request(id, 'a');
      w.core.release(id);
    }
    expect(w.core.view('a')?.instance?.served).toBe(3);
    // Within the allowance (max(50 MiB, 25 % of 125 MiB) = 50 MiB): kept.
    w.core.measured(a, { charge: planned + 50 * MiB, rss: planned + 50 * MiB });
    expect(w.stops).toHaveLength(0);
    w.core.measured(a, { charge: planned + 51 * MiB, rss: planned + 51 * MiB });
    expect(w.stops).toEqual([
      expect.objectContaining({ model: 'a', reason: 'recycle', inFlight: 0 }),
    ]);
    expect(w.stops[0]!.detail).toMatch(/grew 51.0 MiB past its plan \(125.0 MiB\) over 3 requests/);
    w.core.exited(a);
    w.core.request(4, 'a');
    expect(w.loads).toHaveLength(2);
    w.core.loadSucceeded(w.loads[1]!.instance, { loadMs: 10 });
    expect(w.core.view('a')?.instance?.served).toBe(1); // counted afresh
  });

  it('recycle: a busy runner is drained only past twice the allowance; never without the setting', () => {
    const recycle = { growthBytes: 10 * MiB, fraction: 0.5, minRequests: 1 };
    const w = recorder({ sizes: { a: 100 * MiB }, settings: { recycle } });
    w.core.request(1, 'a');
    const a = w.loads[0]!.instance;
    w.core.loadSucceeded(a, { loadMs: 10 });
    const planned = w.loads[0]!.bytes;
    const allowed = 0.5 * planned; // larger than 10 MiB
    w.core.measured(a, { charge: planned, rss: planned + 1.5 * allowed });
    expect(w.stops).toHaveLength(0); // busy: twice the allowance before a drain
    w.core.measured(a, { charge: planned, rss: planned + 2.1 * allowed });
    expect(w.core.view('a')?.instance?.state).toBe('draining');
    w.core.request(2, 'a'); // waits for the recycled runner
    expect(w.grants.has(2)).toBe(false);
    w.core.release(1);
    expect(w.stops).toEqual([expect.objectContaining({ reason: 'recycle' })]);
    w.core.exited(a);
    expect(w.loads).toHaveLength(2);
    w.core.loadSucceeded(w.loads[1]!.instance, { loadMs: 10 });
    expect(w.grants.get(2)).toBe(w.loads[1]!.instance);

    const off = recorder({ sizes: { a: 100 * MiB } });
    off.core.request(1, 'a');
    off.core.loadSucceeded(off.loads[0]!.instance, { loadMs: 10 });
    off.core.release(1);
    off.core.measured(off.loads[0]!.instance, { charge: 10_000 * MiB, rss: 10_000 * MiB });
    expect(off.stops.map((s) => s.reason)).not.toContain('recycle');
  });

  it('429 beyond the queue length', () => {
    const w = recorder({ sizes: { a: 100 * MiB }, settings: { maxQueue: 2 } });
    w.core.request(1, 'a');
    w.core.request(2, 'a');
    w.core.request(3, 'a');
    expect(w.rejects.get(3)).toMatchObject({ kind: 'queue_full' });
  });

  it('a queued request whose client leaves is removed and never starts a load', () => {
    const w = recorder({ sizes: { a: 600 * MiB, b: 600 * MiB } });
    w.core.request(1, 'a');
    w.core.loadSucceeded(w.loads[0]!.instance, { loadMs: 10 });
    w.core.request(2, 'b'); // waits: a is busy
    w.core.cancel(2);
    expect(w.rejects.get(2)).toMatchObject({ kind: 'cancelled' });
    w.core.release(1);
    expect(w.loads).toHaveLength(1);
    expect(w.stops).toHaveLength(0);
  });

  it('never reloads because a request names a smaller context; reloads for a larger one', () => {
    const w = recorder({ sizes: { a: 100 * MiB } });
    w.core.request(1, 'a', { contextSize: 4096 });
    w.core.loadSucceeded(w.loads[0]!.instance, { loadMs: 10 });
    w.core.release(1);
    w.core.request(2, 'a', { contextSize: 1024 });
    expect(w.grants.get(2)).toBe(w.loads[0]!.instance);
    w.core.release(2);
    w.core.request(3, 'a', { contextSize: 8192 });
    expect(w.stops[0]).toMatchObject({ reason: 'reload' });
  });

  it('pinned models are neither evicted nor unloaded by TTL', () => {
    const w = recorder({
      sizes: { a: 600 * MiB, b: 600 * MiB },
      policy: (m) => ({ pinned: m === 'a', ttlMs: 1000 }),
    });
    w.core.request(1, 'a');
    w.core.loadSucceeded(w.loads[0]!.instance, { loadMs: 10 });
    w.core.release(1);
    w.advance(5000);
    w.core.request(2, 'b');
    expect(w.stops).toHaveLength(0);
    expect(w.rejects.get(2)).toMatchObject({ kind: 'no_fit' });
  });

  it('respects maxLoadedModels by evicting the idle LRU model', () => {
    const w = recorder({ sizes: { a: 10 * MiB, b: 10 * MiB }, settings: { maxLoadedModels: 1 } });
    w.core.request(1, 'a');
    w.core.loadSucceeded(w.loads[0]!.instance, { loadMs: 10 });
    w.core.release(1);
    w.core.request(2, 'b');
    expect(w.stops[0]).toMatchObject({ model: 'a', reason: 'max-models' });
  });
});

describe('SchedulerCore per-GPU ledger', () => {
  /** b holds RAM only; a, c and g hold 600 MiB on GPU 0; GPU 0 has a 1000 MiB budget. */
  const gpuWorld = (opts: { pinned?: string; gpuBudgets?: number[] } = {}) =>
    recorder({
      sizes: { a: 100 * MiB, b: 200 * MiB, c: 100 * MiB, g: 100 * MiB },
      gpu: { a: [600 * MiB], c: [600 * MiB], g: [1200 * MiB] },
      settings: { gpuBudgetBytes: opts.gpuBudgets ?? [1000 * MiB] },
      policy: (m) => ({ pinned: m === opts.pinned, ttlMs: 60_000 }),
    });
  /** Loads b (RAM only) first, then a (on GPU 0): b is the least recently used. */
  const loadBThenA = (w: ReturnType<typeof recorder>, opts: { keepABusy?: boolean } = {}) => {
    w.core.request(1, 'b');
    w.core.loadSucceeded(w.loads.at(-1)!.instance, { loadMs: 10 });
    w.advance(100);
    w.core.release(1);
    w.advance(100);
    w.core.request(2, 'a');
    w.core.loadSucceeded(w.loads.at(-1)!.instance, { loadMs: 10 });
    w.advance(100);
    if (!opts.keepABusy) w.core.release(2);
    w.advance(100);
  };

  it('a load that fits RAM but not the GPU evicts the idle model holding GPU memory, not the RAM-only one', () => {
    const w = gpuWorld();
    loadBThenA(w);
    expect(w.core.gpuLedger()).toEqual([
      { index: 0, budget: 1000 * MiB, reserved: 0, measured: 600 * MiB, free: 400 * MiB },
    ]);
    w.core.request(3, 'c'); // RAM: 125 + 250 + 125 of 1000 MiB; GPU 0: 600 + 600 of 1000 MiB
    expect(w.stops.map((s) => [s.model, s.reason])).toEqual([['a', 'evicted']]);
    expect(w.stops[0]!.detail).toContain('GPU 0: needs 600 MiB, 400 MiB free of 1000 MiB');
    expect(w.stops[0]!.detail).not.toContain('needs 125 MiB'); // RAM was not short
    expect(w.loads).toHaveLength(2); // waits for a's exit: its GPU memory is not free before
    w.core.exited(w.stops[0]!.instance);
    expect(w.loads.at(-1)).toMatchObject({ model: 'c', gpuBytes: [600 * MiB] });
    expect(w.core.gpuLedger()[0]).toMatchObject({ reserved: 600 * MiB, measured: 0 });
    expect(w.core.view('c')?.instance).toMatchObject({
      gpuPredicted: [600 * MiB],
      gpuCharge: [600 * MiB],
    });
  });

  it('refuses with 503 naming the GPU when only pinned models hold it', () => {
    const w = gpuWorld({ pinned: 'a' });
    loadBThenA(w);
    w.core.request(3, 'c');
    expect(w.stops).toHaveLength(0); // neither the pinned a nor the RAM-only b
    const r = w.rejects.get(3)!;
    expect(r.kind).toBe('no_fit');
    expect(r.message).toContain('GPU 0: needs 600 MiB, 400 MiB free of 1000 MiB');
    expect(r.guidance).toContain(
      'GPU 0: needs 600 MiB, 400 MiB free of 1000 MiB: offload fewer layers (gpuLayers)',
    );
  });

  it('waits while only a busy model holds the GPU (never evicting it, nor the RAM-only one), then evicts it once idle', () => {
    const w = gpuWorld();
    loadBThenA(w, { keepABusy: true });
    w.core.request(3, 'c');
    expect(w.stops).toHaveLength(0);
    expect(w.rejects.size).toBe(0);
    w.core.release(2);
    expect(w.stops.map((s) => [s.model, s.reason])).toEqual([['a', 'evicted']]);
    w.core.exited(w.stops[0]!.instance);
    expect(w.loads.at(-1)!.model).toBe('c');
  });

  it('a request that waited for a busy GPU past the queue bound is refused naming the GPU', () => {
    const w = gpuWorld();
    loadBThenA(w, { keepABusy: true });
    w.core.request(3, 'c');
    w.advance(10_000);
    const r = w.rejects.get(3)!;
    expect(r.kind).toBe('queue_timeout');
    expect(r.message).toContain('waiting for GPU memory: GPU 0: needs 600 MiB, 400 MiB free');
    expect(w.stops).toHaveLength(0);
  });

  it('refuses at once, naming the GPU, a plan larger than the GPU budget', () => {
    const w = gpuWorld();
    loadBThenA(w, { keepABusy: true }); // busy a could free 600 MiB, still not enough
    w.core.request(3, 'g');
    expect(w.rejects.get(3)).toMatchObject({ kind: 'no_fit' });
    expect(w.rejects.get(3)!.message).toContain('GPU 0: needs 1200 MiB, 400 MiB free of 1000 MiB');
    expect(w.stops).toHaveLength(0);
  });

  it('a lowered GPU budget evicts the idle models holding that GPU only', () => {
    const w = gpuWorld();
    loadBThenA(w);
    w.core.setGpuBudgets([500 * MiB]);
    expect(w.stops.map((s) => [s.model, s.reason])).toEqual([['a', 'over-budget']]);
    expect(w.stops[0]!.detail).toBe('GPU 0 is 100 MiB over its budget');
  });

  it('keeps the planned GPU share until a measurement names the GPU', () => {
    const w = gpuWorld();
    loadBThenA(w);
    const a = w.loads.at(-1)!.instance;
    w.core.measured(a, { charge: 90 * MiB, rss: 90 * MiB, peak: 90 * MiB });
    expect(w.core.view('a')?.instance).toMatchObject({ charge: 90 * MiB, gpuCharge: [600 * MiB] });
    w.core.measured(a, { charge: 90 * MiB, gpus: [700 * MiB] });
    expect(w.core.gpuLedger()[0]).toMatchObject({ measured: 700 * MiB, free: 300 * MiB });
  });

  it('without GPU budgets, GPU bytes do not limit (a machine without GPUs behaves as RAM-only)', () => {
    const w = gpuWorld({ gpuBudgets: [] });
    loadBThenA(w);
    w.core.request(3, 'c');
    w.core.request(4, 'g');
    expect(w.stops).toHaveLength(0);
    expect(w.loads.map((l) => l.model)).toEqual(['b', 'a', 'c', 'g']);
    expect(w.core.gpuLedger()).toEqual([
      {
        index: 0,
        budget: Number.POSITIVE_INFINITY,
        reserved: 1800 * MiB,
        measured: 600 * MiB,
        free: Number.POSITIVE_INFINITY,
      },
    ]);
  });
});

describe('SchedulerCore under memory pressure', () => {
  /** Loads each model with its load time, one after the other, and leaves it idle and measured. */
  function loaded(
    w: ReturnType<typeof recorder>,
    models: Array<{ name: string; loadMs: number; rssMiB: number }>,
  ): Map<string, number> {
    const ids = new Map<string, number>();
    let req = 1000;
    for (const m of models) {
      w.core.request(++req, m.name);
      const inst = w.loads.at(-1)!.instance;
      w.core.loadSucceeded(inst, { loadMs: m.loadMs });
      w.core.measured(inst, { charge: w.loads.at(-1)!.bytes, rss: m.rssMiB * MiB });
      w.advance(100);
      w.core.release(req);
      ids.set(m.name, inst);
    }
    return ids;
  }

  it('medium: new loads are planned one step smaller, and the config the core holds is the one the runner is told to run', () => {
    const w = recorder({ sizes: { a: 100 * MiB } });
    w.pressure('medium', 0, { reasons: ['available 15% < medium 16%'] });
    w.core.request(1, 'a', { contextSize: 8192 });
    // One step: the KV cache quantised (flash attention is on), planned again at that type.
    expect(w.configs[0]).toMatchObject({ contextSize: 8192, kvCacheKeyType: 'q8_0' });
    expect(w.loads[0]!.bytes).toBe(150 * MiB); // 100 × (1 + 0.5), not the f16 plan's 200
    expect(w.core.view('a')!.instance!.config).toEqual(w.configs[0]);
    expect(w.notes).toContainEqual({
      type: 'load-policy',
      policy: expect.objectContaining({ level: 'medium', shrinkSteps: 1 }),
    });
    // A request that names its KV type keeps it: the context is halved instead.
    w.pressure('high');
    w.core.request(2, 'b', { contextSize: 8192, kv: 'f16' });
    expect(w.configs[1]).toMatchObject({ contextSize: 2048, kvCacheKeyType: 'f16' });
    expect(w.core.view('b')!.instance!.config).toEqual(w.configs[1]);
    // Thermal throttling: half the batch, a thread fewer.
    w.pressure('low', 0, { throttled: true });
    w.core.request(3, 'c');
    expect(w.configs[2]).toMatchObject({ batchSize: 32, threads: 1, kvCacheKeyType: 'f16' });
  });

  it('a shrunk load serves the request that asked for more: no reload loop while pressure lasts', () => {
    const w = recorder({ sizes: { a: 100 * MiB } });
    w.pressure('high');
    w.core.request(1, 'a', { contextSize: 8192, kv: 'f16' });
    w.core.loadSucceeded(w.loads[0]!.instance, { loadMs: 10 });
    expect(w.grants.has(1)).toBe(true);
    w.core.release(1);
    w.core.request(2, 'a', { contextSize: 8192, kv: 'f16' });
    expect(w.grants.has(2)).toBe(true);
    expect(w.loads).toHaveLength(1);
    expect(w.stops).toEqual([]);
  });

  it('trims ready runners once per rise in level, again after pressure went back to low', () => {
    const w = recorder({ sizes: { a: 100 * MiB, b: 100 * MiB }, parallel: 2 });
    loaded(w, [{ name: 'a', loadMs: 10, rssMiB: 100 }]);
    w.core.request(1, 'b');
    w.core.loadSucceeded(w.loads[1]!.instance, { loadMs: 10 }); // b busy: trimmed too
    w.pressure('medium');
    w.pressure('medium');
    expect(w.trims).toHaveLength(1);
    expect(w.trims[0]!.runners.map((r) => r.model).sort()).toEqual(['a', 'b']);
    w.pressure('high');
    w.pressure('medium');
    expect(w.trims.map((t) => t.level)).toEqual(['medium', 'high']);
    w.pressure('low');
    w.pressure('medium');
    expect(w.trims.map((t) => t.level)).toEqual(['medium', 'high', 'medium']);
  });

  it('high: evicts by idle time over reload cost, not plain LRU; never a busy model; only what the excess needs', () => {
    const w = recorder({ sizes: { slow: 100 * MiB, cheap: 100 * MiB, busy: 100 * MiB } });
    loaded(w, [
      { name: 'slow', loadMs: 20_000, rssMiB: 120 }, // idle longest, but 20 s to load again
      { name: 'cheap', loadMs: 100, rssMiB: 120 },
    ]);
    w.core.request(1, 'busy');
    w.core.loadSucceeded(w.loads[2]!.instance, { loadMs: 10 });
    w.advance(1000);
    w.pressure('high', 50);
    expect(w.stops.map((s) => [s.model, s.reason, s.level])).toEqual([
      ['cheap', 'pressure', 'high'],
    ]);
    expect(w.stops[0]!.bytes).toBe(120 * MiB); // the measured resident set
    // Still high while cheap stops: its bytes count as freed.
    w.pressure('high', 100);
    expect(w.stops).toHaveLength(1);
    // More than every idle model frees: all idle unpinned ones go, the busy one stays.
    w.pressure('high', 10_000);
    expect(w.stops.map((s) => s.model)).toEqual(['cheap', 'slow']);
  });

  it('critical: refuses new loads with guidance, and the refusals do not count toward back-off', () => {
    const w = recorder({ sizes: { a: 100 * MiB } });
    w.pressure('critical', 0, { reasons: ['available 3% < critical 4%'] });
    for (const id of [1, 2, 3]) w.core.request(id, 'a');
    expect(w.loads).toHaveLength(0);
    expect(w.rejects.get(1)).toMatchObject({
      kind: 'pressure',
      retryAfterSeconds: 5,
      message: expect.stringContaining('critical (available 3% < critical 4%)'),
      guidance: expect.arrayContaining([expect.stringContaining('headroom unload')]),
    });
    expect([...w.rejects.values()].map((r) => r.kind)).toEqual([
      'pressure',
      'pressure',
      'pressure',
    ]);
    expect(w.core.view('a')).toMatchObject({ failures: 0 });
    w.pressure('low');
    w.core.request(4, 'a');
    expect(w.loads).toHaveLength(1); // no back-off
  });

  it('critical: a request that needs a reload is refused without draining the loaded model', () => {
    const w = recorder({ sizes: { a: 100 * MiB } });
    loaded(w, [{ name: 'a', loadMs: 10, rssMiB: 100 }]);
    w.pressure('critical');
    w.core.request(1, 'a', { contextSize: 8192 });
    expect(w.rejects.get(1)).toMatchObject({ kind: 'pressure' });
    expect(w.stops).toEqual([]);
    w.core.request(2, 'a'); // served by what is loaded
    expect(w.grants.has(2)).toBe(true);
  });

  it('critical: evicts what the excess needs, not every idle model', () => {
    const w = recorder({ sizes: { a: 100 * MiB, b: 100 * MiB, c: 100 * MiB } });
    loaded(w, [
      { name: 'a', loadMs: 10, rssMiB: 100 },
      { name: 'b', loadMs: 10, rssMiB: 100 },
      { name: 'c', loadMs: 10, rssMiB: 100 },
    ]);
    w.pressure('critical', 150);
    expect(w.stops.map((s) => [s.model, s.level])).toEqual([
      ['a', 'critical'],
      ['b', 'critical'],
    ]);
  });

  it('critical: pinned models go last, and only when the unpinned ones are not enough', () => {
    const policy = (m: string): ModelPolicy => ({ pinned: m === 'p', ttlMs: 60_000 });
    const w = recorder({ sizes: { p: 100 * MiB, u: 100 * MiB }, policy });
    loaded(w, [
      { name: 'p', loadMs: 10, rssMiB: 100 }, // pinned, and idle longest
      { name: 'u', loadMs: 10, rssMiB: 100 },
    ]);
    w.pressure('high', 500);
    expect(w.stops.map((s) => s.model)).toEqual(['u']); // pinned never at high
    const v = recorder({ sizes: { p: 100 * MiB, u: 100 * MiB }, policy });
    loaded(v, [
      { name: 'p', loadMs: 10, rssMiB: 100 },
      { name: 'u', loadMs: 10, rssMiB: 100 },
    ]);
    v.pressure('critical', 80);
    expect(v.stops.map((s) => s.model)).toEqual(['u']);
    v.core.exited(v.stops[0]!.instance);
    v.advance(1);
    v.pressure('critical', 80);
    expect(v.stops.map((s) => s.model)).toEqual(['u', 'p']);
    expect(v.stops[1]!.detail).toMatch(/pinned but idle/);
  });

  it('a reading taken before the last runner exit evicts nothing: it still counts what that exit returned', () => {
    const w = recorder({ sizes: { a: 100 * MiB, b: 100 * MiB } });
    loaded(w, [
      { name: 'a', loadMs: 10, rssMiB: 100 },
      { name: 'b', loadMs: 10, rssMiB: 100 },
    ]);
    w.pressure('high', 50);
    expect(w.stops.map((s) => s.model)).toEqual(['a']);
    const readBefore = w.now;
    w.advance(5);
    w.core.exited(w.stops[0]!.instance);
    w.pressure('high', 50, { sampledAt: readBefore });
    expect(w.stops).toHaveLength(1);
    w.advance(1);
    w.pressure('high', 50);
    expect(w.stops.map((s) => s.model)).toEqual(['a', 'b']);
  });

  it('critical with cancelOnCritical: cancels the newest request when evicting is not enough, one at a time', () => {
    const w = recorder({ sizes: { a: 100 * MiB, b: 100 * MiB, idle: 100 * MiB }, parallel: 2 });
    loaded(w, [{ name: 'idle', loadMs: 10, rssMiB: 100 }]);
    w.core.request(1, 'a');
    w.core.loadSucceeded(w.loads.at(-1)!.instance, { loadMs: 10 });
    w.core.request(2, 'b');
    w.core.loadSucceeded(w.loads.at(-1)!.instance, { loadMs: 10 });
    w.core.request(3, 'a'); // granted last
    expect(w.grants.has(3)).toBe(true);
    w.pressure('critical', 50, { cancelOnCritical: true });
    expect(w.cancels).toEqual([]); // evicting idle covers it
    w.core.exited(w.stops[0]!.instance);
    w.advance(1);
    w.pressure('critical', 300); // not configured: nothing cancelled
    expect(w.cancels).toEqual([]);
    w.pressure('critical', 300, { cancelOnCritical: true });
    expect(w.cancels).toEqual([
      expect.objectContaining({ request: 3, model: 'a', level: 'critical' }),
    ]);
    w.pressure('critical', 300, { cancelOnCritical: true });
    expect(w.cancels).toHaveLength(1); // until it is released
    w.core.release(3);
    w.pressure('critical', 300, { cancelOnCritical: true });
    expect(w.cancels.map((c) => c.request)).toEqual([3, 2]);
  });
});

// ---- properties over random sequences ---------------------------------------------------------

type Op =
  | { t: 'req'; m: number; ctx: number; keep: number | null | undefined }
  | { t: 'cancel'; k: number }
  | { t: 'release'; k: number }
  | { t: 'loadOk'; k: number }
  | { t: 'loadFail'; k: number }
  | { t: 'exit'; k: number }
  | { t: 'crash'; k: number }
  | { t: 'tick'; ms: number }
  | { t: 'wake'; early: boolean }
  | { t: 'measure'; k: number; frac: number; gpu: boolean }
  | { t: 'unload'; m: number; force: boolean }
  | {
      t: 'pressure';
      level: PressureLevel;
      excessMiB: number;
      /** Read before the last runner exit (a stale reading). */
      stale: boolean;
      throttled: boolean;
      cancel: boolean;
    };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('req' as const),
      m: fc.nat(3),
      ctx: fc.constantFrom(0, 1024, 4096, 8192),
      keep: fc.constantFrom(undefined, 0, null, 3000),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('cancel' as const), k: fc.nat() }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('release' as const), k: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('loadOk' as const), k: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('loadFail' as const), k: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('exit' as const), k: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('crash' as const), k: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('tick' as const),
      ms: fc.integer({ min: 1, max: 4000 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ t: fc.constant('wake' as const), early: fc.boolean() }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('measure' as const),
      k: fc.nat(),
      frac: fc.double({ min: 0.3, max: 1, noNaN: true }),
      // Whether the measurement names the GPUs too (no runner reports VRAM today; one may).
      gpu: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant('unload' as const), m: fc.nat(3), force: fc.boolean() }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('pressure' as const),
      level: fc.constantFrom<PressureLevel>('low', 'low', 'medium', 'high', 'critical'),
      excessMiB: fc.oneof(
        { weight: 1, arbitrary: fc.constant(0) },
        { weight: 4, arbitrary: fc.integer({ min: 1, max: 1500 }) },
      ),
      stale: fc.constantFrom(false, false, false, true),
      throttled: fc.boolean(),
      cancel: fc.boolean(),
    }),
  },
);

const MODELS = ['a', 'b', 'c', 'd'];

interface SimInstance {
  model: string;
  state: 'loading' | 'ready' | 'stopping';
  /** Stopped while loading: the shell reports that as the load failing (aborted). */
  abortedLoad: boolean;
  bytes: number;
  gpuBytes: number[];
  inFlight: Set<number>;
  lastActivity: number;
  keep: number | null | undefined;
  drainDeadline?: number;
}

/**
 * Runs a random sequence against the core and checks the invariants after every step. The
 * world (runners, clock, clients) is simulated here, independently of the core's own books.
 */
function simulate(
  ops: Op[],
  params: {
    budget: number;
    sizes: number[];
    /** Indexes of the pinned models. */
    pinned: readonly number[];
    ttl: number;
    maxLoaded: number;
    /** Budget per GPU (empty: no GPU limits) and, per model, the bytes it plans on each GPU. */
    gpuBudgets?: number[];
    gpuSizes?: number[][];
  },
) {
  const gpuBudgets = params.gpuBudgets ?? [];
  let now = 0;
  const ttlPolicy = params.ttl;
  const policy = (m: string): ModelPolicy => ({
    pinned: params.pinned.includes(MODELS.indexOf(m)),
    ttlMs: ttlPolicy,
  });
  const sizes = Object.fromEntries(MODELS.map((m, i) => [m, params.sizes[i]!]));
  const answers = new Map<number, number>();
  const submitted: Array<{ id: number; model: string; keep: number | null | undefined }> = [];
  const queued = new Set<number>();
  const held = new Map<number, number>(); // request → instance
  const cancelled = new Set<number>();
  const inst = new Map<number, SimInstance>();
  const drainStarted = new Map<number, number>();
  const failures: string[] = [];
  const fail = (msg: string) => failures.push(`t=${now}: ${msg}`);
  const answer = (id: number) => {
    const n = (answers.get(id) ?? 0) + 1;
    answers.set(id, n);
    if (n > 1) fail(`request ${id} answered ${n} times`);
    queued.delete(id);
  };
  let loadCount = 0;
  let gpuLoadCount = 0; // loads that reserved bytes on a GPU with a budget
  let stopCount = 0;
  const everHeld = new Set<number>();
  const keepOf = new Map<number, number | null | undefined>();
  // Pressure: the last reading, the world's own account of exits, failures and cancellations.
  let level: PressureLevel = 'low';
  let throttled = false;
  let reading: { stale: boolean; need: number; cancel: boolean } | undefined;
  let lastExit = Number.NEGATIVE_INFINITY;
  const pressureStops: StopOrder[] = [];
  const failuresOf = new Map<string, number>();
  const grantOrder = new Map<number, number>();
  const cancelledHeld = new Set<number>();
  const configOf = new Map<number, RunnerConfig>();
  let pressureEvictions = 0;
  let refusals = 0;
  const removed = (at: number) => (lastExit = Math.max(lastExit, at));
  const core = new SchedulerCore({
    settings: {
      ...baseSettings,
      budgetBytes: params.budget,
      gpuBudgetBytes: gpuBudgets,
      maxLoadedModels: params.maxLoaded,
      maxWaitMs: 8000,
      drainDeadlineMs: 3000,
    },
    plan: sizePlan(
      sizes,
      2,
      Object.fromEntries(MODELS.map((m, i) => [m, params.gpuSizes?.[i] ?? []])),
    ),
    policy,
    now: () => now,
    effects: {
      startLoad: (o) => {
        // A load starts only for a live, queued, never-cancelled request of that model.
        const live = [...queued].some(
          (id) => submitted[id - 1]!.model === o.model && !cancelled.has(id),
        );
        if (!live) fail(`load of ${o.model} started with no live queued request`);
        if (level === 'critical') fail(`load of ${o.model} started at critical pressure`);
        // The config follows the load policy in force (no request here names a KV type).
        const shaped = adjustLoad(
          config(o.config.contextSize, 2),
          loadPolicyFor({ level, throttled, excessBytes: 0, reasons: [], sampledAt: now }),
        );
        for (const k of ['kvCacheKeyType', 'batchSize', 'threads'] as const)
          if (o.config[k] !== shaped[k])
            fail(`load of ${o.model} at ${level}: ${k} ${o.config[k]}, policy says ${shaped[k]}`);
        configOf.set(o.instance, o.config);
        loadCount++;
        if (o.gpuBytes.some((b, g) => b > 0 && g < gpuBudgets.length)) gpuLoadCount++;
        inst.set(o.instance, {
          model: o.model,
          state: 'loading',
          abortedLoad: false,
          bytes: o.bytes,
          gpuBytes: [...o.gpuBytes],
          inFlight: new Set(),
          lastActivity: now,
          keep: undefined,
        });
      },
      grant: (r, i) => {
        answer(r);
        const s = inst.get(i);
        if (!s || s.state !== 'ready') fail(`request ${r} granted on a non-ready instance ${i}`);
        s?.inFlight.add(r);
        held.set(r, i);
        everHeld.add(r);
        grantOrder.set(r, grantOrder.size);
        if (s) {
          s.lastActivity = now;
          const k = keepOf.get(r);
          if (k !== undefined) s.keep = k;
        }
      },
      reject: (r, rej) => {
        answer(r);
        if (rej.kind === 'pressure') {
          refusals++;
          if (level !== 'critical') fail(`request ${r} refused for pressure at ${level}`);
        }
      },
      stop: (o) => {
        const s = inst.get(o.instance);
        if (!s) return fail(`stop of unknown instance ${o.instance}`);
        if (o.reason === 'pressure') {
          pressureEvictions++;
          pressureStops.push(o);
          if (!reading) fail(`pressure eviction of ${o.model} outside a pressure reading`);
          else if (reading.stale) fail(`pressure eviction of ${o.model} on a stale reading`);
          if (level !== 'high' && level !== 'critical')
            fail(`pressure eviction of ${o.model} at ${level}`);
          if (policy(s.model).pinned) {
            if (level !== 'critical') fail(`pinned ${o.model} evicted at ${level}`);
            for (const [id, x] of inst)
              if (x.state === 'ready' && x.inFlight.size === 0 && !policy(x.model).pinned)
                fail(`pinned ${o.model} evicted while unpinned idle #${id} (${x.model}) is left`);
          }
        }
        if (s.inFlight.size > 0 && o.reason !== 'forced') {
          const d = drainStarted.get(o.instance);
          if (o.reason !== 'drain-deadline' || d === undefined || now < d + 3000)
            fail(`instance ${o.instance} with ${s.inFlight.size} in flight stopped (${o.reason})`);
        }
        if (o.reason === 'ttl') {
          const ttl = s.keep === null ? Infinity : (s.keep ?? ttlPolicy);
          if (now < s.lastActivity + ttl)
            fail(`TTL stop of ${o.instance} at ${now}, before ${s.lastActivity} + ${ttl}`);
          if (policy(s.model).pinned) fail(`TTL stop of pinned ${s.model}`);
        }
        if (o.reason === 'evicted' && policy(s.model).pinned) fail(`evicted pinned ${s.model}`);
        stopCount++;
        s.abortedLoad = s.state === 'loading';
        s.state = 'stopping';
      },
      note: (n) => {
        if (n.type === 'drain') drainStarted.set(n.instance, now);
      },
      cancelRequest: (o) => {
        if (!reading?.cancel || level !== 'critical')
          fail(`request ${o.request} cancelled at ${level} (configured: ${reading?.cancel})`);
        if (cancelledHeld.size > 0) fail(`request ${o.request} cancelled while another is`);
        if (!held.has(o.request)) fail(`request ${o.request} cancelled but not in flight`);
        let newest: number | undefined;
        for (const [r, i] of held)
          if (
            inst.get(i)?.state === 'ready' &&
            (newest === undefined || grantOrder.get(r)! > grantOrder.get(newest)!)
          )
            newest = r;
        if (o.request !== newest) fail(`request ${o.request} cancelled, the newest is ${newest}`);
        cancelledHeld.add(o.request);
        stats.cancels++;
      },
    },
  });
  const checkLedger = () => {
    let total = 0;
    for (const s of inst.values()) total += s.bytes;
    if (total > params.budget) fail(`ledger ${total} over budget ${params.budget}`);
    const l = core.ledger();
    if (l.reserved + l.measured !== total)
      fail(`core ledger ${l.reserved + l.measured} ≠ ${total}`);
    // What the core reports of each instance is what its runner was told to run.
    for (const [id, s] of inst) {
      const v = core.view(s.model)?.instance;
      if (v?.id === id && JSON.stringify(v.config) !== JSON.stringify(configOf.get(id)))
        fail(
          `#${id} reports ${JSON.stringify(v.config)}, runs ${JSON.stringify(configOf.get(id))}`,
        );
    }
    // A pressure refusal is not a failure: the core counts no more than the world saw.
    for (const m of MODELS) {
      const f = core.view(m)?.failures ?? 0;
      if (f > (failuresOf.get(m) ?? 0))
        fail(`${m}: ${f} failures counted, ${failuresOf.get(m) ?? 0} happened`);
    }
    // Per GPU: the same invariant against each GPU's own budget, and the same books.
    const gpuLedger = core.gpuLedger();
    let devices = gpuBudgets.length;
    for (const s of inst.values()) devices = Math.max(devices, s.gpuBytes.length);
    for (let g = 0; g < devices; g++) {
      let onGpu = 0;
      for (const s of inst.values()) onGpu += s.gpuBytes[g] ?? 0;
      const budget = gpuBudgets[g];
      if (budget !== undefined && onGpu > budget)
        fail(`GPU ${g} ledger ${onGpu} over its budget ${budget}`);
      const c = gpuLedger[g];
      if ((c?.reserved ?? 0) + (c?.measured ?? 0) !== onGpu)
        fail(`core GPU ${g} ledger ${(c?.reserved ?? 0) + (c?.measured ?? 0)} ≠ ${onGpu}`);
    }
  };
  const pick = <T>(xs: T[], k: number): T | undefined =>
    xs.length === 0 ? undefined : xs[k % xs.length];
  const byState = (st: SimInstance['state']) =>
    [...inst.entries()].filter(([, s]) => s.state === st).map(([id]) => id);
  const releaseReq = (r: number) => {
    const i = held.get(r)!;
    held.delete(r);
    const s = inst.get(i);
    if (s) {
      s.inFlight.delete(r);
      s.lastActivity = now;
      failuresOf.set(s.model, 0); // it served a request
    }
    cancelledHeld.delete(r);
    core.release(r);
  };
  const exitStopped = (id: number) => {
    const s = inst.get(id)!;
    inst.delete(id);
    removed(now);
    if (s.abortedLoad) core.loadFailed(id, 'aborted');
    else core.exited(id);
  };

  for (const op of ops) {
    switch (op.t) {
      case 'req': {
        const id = submitted.length + 1;
        const model = MODELS[op.m]!;
        submitted.push({ id, model, keep: op.keep });
        keepOf.set(id, op.keep);
        queued.add(id);
        core.request(id, model, op.ctx ? { contextSize: op.ctx } : {}, {
          ...(op.keep !== undefined ? { keepAliveMs: op.keep } : {}),
        });
        break;
      }
      case 'cancel': {
        const r = pick([...queued], op.k);
        if (r !== undefined) {
          cancelled.add(r);
          core.cancel(r);
        }
        break;
      }
      case 'release': {
        const r = pick([...held.keys()], op.k);
        if (r !== undefined) releaseReq(r);
        break;
      }
      case 'loadOk': {
        const id = pick(byState('loading'), op.k);
        if (id !== undefined) {
          inst.get(id)!.state = 'ready';
          inst.get(id)!.lastActivity = now;
          core.loadSucceeded(id, { loadMs: 100 });
        }
        break;
      }
      case 'loadFail': {
        const id = pick(byState('loading'), op.k);
        if (id !== undefined) {
          const m = inst.get(id)!.model;
          inst.delete(id);
          removed(now);
          failuresOf.set(m, (failuresOf.get(m) ?? 0) + 1);
          core.loadFailed(id, 'boom');
        }
        break;
      }
      case 'exit': {
        const id = pick(byState('stopping'), op.k);
        if (id !== undefined) exitStopped(id);
        break;
      }
      case 'crash': {
        const id = pick(byState('ready'), op.k);
        if (id !== undefined) {
          const m = inst.get(id)!.model;
          inst.delete(id);
          removed(now);
          failuresOf.set(m, (failuresOf.get(m) ?? 0) + 1);
          core.exited(id, { message: 'crash' });
        }
        break;
      }
      case 'tick': {
        now += op.ms;
        core.tick();
        break;
      }
      case 'wake': {
        // The shell's timer: fire exactly at the next deadline (or 1 ms before it).
        const at = core.nextWakeAt();
        if (at !== undefined) now = Math.max(now, at - (op.early ? 1 : 0));
        core.tick();
        break;
      }
      case 'measure': {
        const id = pick(byState('ready'), op.k);
        if (id !== undefined) {
          const s = inst.get(id)!;
          s.bytes = Math.round(s.bytes * op.frac);
          if (op.gpu) s.gpuBytes = s.gpuBytes.map((b) => Math.round(b * op.frac));
          core.measured(id, {
            charge: s.bytes,
            rss: s.bytes,
            peak: s.bytes,
            ...(op.gpu ? { gpus: s.gpuBytes } : {}),
          });
        }
        break;
      }
      case 'unload':
        core.unload(MODELS[op.m]!, { force: op.force });
        break;
      case 'pressure': {
        now += 1; // the sampler reads after what happened before
        const stale = op.stale && Number.isFinite(lastExit);
        const excess = op.excessMiB * MiB;
        // Bytes already on their way out count as freed (the core's rule, from its own view).
        let need = excess;
        for (const m of MODELS) {
          const v = core.view(m)?.instance;
          if (v && (v.state === 'stopping' || v.state === 'draining'))
            need -= v.measured ?? v.charge;
        }
        level = op.level;
        throttled = op.throttled;
        reading = { stale, need, cancel: op.cancel };
        pressureStops.length = 0;
        core.pressure({
          level: op.level,
          excessBytes: excess,
          throttled: op.throttled,
          reasons: [],
          sampledAt: stale ? lastExit : now,
          cancelOnCritical: op.cancel,
        });
        // No more than needed: without its last victim, the unpinned ones chosen fall short.
        const unpinned = pressureStops.filter((o) => !policy(o.model).pinned);
        const allButLast = unpinned.slice(0, -1).reduce((a, o) => a + o.bytes, 0);
        if (unpinned.length > 0 && allButLast >= need)
          fail(`pressure evicted ${unpinned.map((o) => o.model).join(',')} for ${need} bytes`);
        reading = undefined;
        break;
      }
    }
    checkLedger();
  }
  // Wind down: clients finish, the daemon shuts down, every runner exits.
  for (const r of [...held.keys()]) releaseReq(r);
  core.shutdown();
  for (let round = 0; round < 20; round++) {
    for (const id of byState('loading')) {
      inst.get(id)!.state = 'ready';
      core.loadSucceeded(id, { loadMs: 1 });
    }
    for (const id of byState('stopping')) exitStopped(id);
    now += 4000;
    core.tick();
    checkLedger();
  }
  for (const s of submitted) {
    if ((answers.get(s.id) ?? 0) !== 1)
      fail(`request ${s.id} answered ${answers.get(s.id) ?? 0} times`);
  }
  if (inst.size > 0) fail(`${inst.size} instance(s) left after shutdown`);
  stats.loads += loadCount;
  stats.gpuLoads += gpuLoadCount;
  stats.grants += [...answers.keys()].filter((r) => everHeld.has(r)).length;
  stats.stops += stopCount;
  stats.pressureEvictions += pressureEvictions;
  stats.refusals += refusals;
  return failures;
}

const stats = {
  loads: 0,
  grants: 0,
  stops: 0,
  gpuLoads: 0,
  pressureEvictions: 0,
  refusals: 0,
  cancels: 0,
};

describe('SchedulerCore properties', () => {
  it('over random sequences (pressure and pins included): ledger within the RAM budget and every GPU budget, no early stop of busy models, every request answered once, no load for cancelled requests, no early TTL unload, no pinned model evicted while an unpinned idle one is left, the reported config is the running one', () => {
    // GPU bytes per model and device: often none (a RAM-only model), else 10–800 MiB.
    const gpuBytesArb = fc.oneof(fc.constant(0), fc.integer({ min: 10, max: 800 }));
    fc.assert(
      fc.property(
        fc.array(opArb, { minLength: 1, maxLength: 150, size: 'max' }),
        fc.integer({ min: 200, max: 2000 }),
        fc.array(fc.integer({ min: 20, max: 600 }), { minLength: 4, maxLength: 4 }),
        fc.subarray([0, 1, 2, 3], { maxLength: 2 }),
        fc.constantFrom(0, 2000, 5000, Number.POSITIVE_INFINITY),
        fc.constantFrom(1, 2, Number.POSITIVE_INFINITY),
        fc.array(fc.integer({ min: 100, max: 1500 }), { maxLength: 2 }),
        fc.array(fc.array(gpuBytesArb, { maxLength: 2 }), { minLength: 4, maxLength: 4 }),
        (ops, budgetMiB, sizesMiB, pinned, ttl, maxLoaded, gpuBudgetsMiB, gpuSizesMiB) => {
          const failures = simulate(ops, {
            budget: budgetMiB * MiB,
            sizes: sizesMiB.map((s) => s * MiB),
            pinned,
            ttl,
            maxLoaded,
            gpuBudgets: gpuBudgetsMiB.map((b) => b * MiB),
            gpuSizes: gpuSizesMiB.map((m) => m.map((b) => b * MiB)),
          });
          expect(failures).toEqual([]);
        },
      ),
      { numRuns: 400 },
    );
    // The sequences must exercise the interesting paths, or the property proves little.
    expect(stats.loads).toBeGreaterThan(1000);
    expect(stats.grants).toBeGreaterThan(600);
    expect(stats.stops).toBeGreaterThan(600);
    expect(stats.gpuLoads).toBeGreaterThan(200);
    expect(stats.pressureEvictions).toBeGreaterThan(60);
    expect(stats.refusals).toBeGreaterThan(300);
    expect(stats.cancels).toBeGreaterThan(10);
    if (process.env.SCHED_STATS) console.log(stats);
  });
});
