import { EventEmitter } from 'node:events';
import { describe, expect, it, vi } from 'vitest';
import type { RunnerConfig } from '../engines/types.js';
import type { FeedEvent, MonitorSample, ReactionRecord } from '../monitor/feed.js';
import {
  ModelManager,
  PressureRefusedError,
  type ModelManagerOptions,
} from '../scheduler/model-manager.js';
import type { ModelEntry, RunnerExit, RunnerHandle } from '../scheduler/types.js';
import { attachReactions, type ReactionSource } from './reactions.js';

/**
 * The daemon's pressure wiring against the real scheduler (ModelManager and its core) with
 * runner doubles: samples go in, the scheduler decides, and what it did comes out on the event
 * stream. The clock is injected; samples carry times on it.
 */

const MiB = 1024 * 1024;

class FakeRunner implements RunnerHandle {
  readonly url: string;
  readonly loadMs: number;
  #listeners = new Set<(e: RunnerExit) => void>();
  constructor(
    readonly pid: number,
    loadMs: number,
  ) {
    this.url = `http://127.0.0.1:${10000 + pid}`;
    this.loadMs = loadMs;
  }
  onExit(l: (e: RunnerExit) => void): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }
  async stop(): Promise<void> {
    for (const l of [...this.#listeners]) l({ code: 0, signal: null });
  }
}

/** A sampler stand-in: samples are emitted by hand; published events are kept. */
function fakeSampler(): ReactionSource & {
  emitSample(s: MonitorSample): void;
  events: FeedEvent[];
} {
  const ee = new EventEmitter();
  const events: FeedEvent[] = [];
  return {
    on: ((e: string, f: (...a: unknown[]) => void) => ee.on(e, f)) as ReactionSource['on'],
    off: ((e: string, f: (...a: unknown[]) => void) => ee.off(e, f)) as ReactionSource['off'],
    publish: (e: FeedEvent) => void events.push(e),
    emitSample: (s) => ee.emit('sample', s),
    events,
  };
}

function sample(at: number, level: string, excessMiB: number): MonitorSample {
  return {
    at,
    pressure: { level, excessBytes: excessMiB * MiB, reasons: [`test ${level}`] },
    thermal: { throttled: false },
  } as unknown as MonitorSample;
}

const defaults: Omit<RunnerConfig, 'modelPath'> = {
  contextSize: 4096,
  parallel: 1,
  threads: 2,
  batchSize: 512,
  flashAttention: true,
  kvCacheKeyType: 'f16',
  kvCacheValueType: 'f16',
  mmap: true,
  gpuLayers: 0,
};

function setup(opts: { pinned?: string[]; trimRunner?: ModelManagerOptions['trimRunner'] } = {}) {
  let clock = 1000;
  let pid = 100;
  const catalog = new Map<string, ModelEntry>(
    ['a', 'b', 'c'].map((n) => [n, { name: n, path: `/m/${n}.gguf`, overrides: {} }]),
  );
  const started: Array<{ name: string; config: RunnerConfig }> = [];
  const loadMs: Record<string, number> = { a: 50, b: 50, c: 50 };
  const manager = new ModelManager({
    catalog: () => catalog,
    defaults,
    stopGraceMs: 10,
    now: () => clock,
    policy: (n) => ({ pinned: opts.pinned?.includes(n) ?? false, ttlMs: Infinity }),
    startRunner: async (entry, config) => {
      started.push({ name: entry.name, config });
      return new FakeRunner(++pid, loadMs[entry.name] ?? 50);
    },
    measure: async () => ({ charge: 100 * MiB, rss: 100 * MiB, peak: 100 * MiB }),
    ...(opts.trimRunner ? { trimRunner: opts.trimRunner } : {}),
  });
  const sampler = fakeSampler();
  const reactions = attachReactions(manager, sampler, { cancelOnCritical: true });
  const records = (action: ReactionRecord['action']): ReactionRecord[] =>
    sampler.events.flatMap((e) =>
      e.type === 'reaction' && e.reaction.action === action ? [e.reaction] : [],
    );
  return {
    manager,
    sampler,
    reactions,
    started,
    records,
    /** Loads a model, leaves it idle and measured, then moves the clock on. */
    async idle(name: string) {
      await manager.load(name);
      await vi.waitFor(() => expect(manager.status(name).measured).toBe(100 * MiB));
      clock += 100;
    },
    feed(level: string, excessMiB = 0) {
      clock += 1;
      sampler.emitSample(sample(clock, level, excessMiB));
    },
  };
}

describe('attachReactions (samples → scheduler → event stream)', () => {
  it('high: the scheduler evicts the idle model first in its order; the unload is published with level, bytes and time', async () => {
    const w = setup();
    await w.idle('a');
    await w.idle('b');
    w.feed('high', 50);
    w.feed('high', 50); // while a stops: its bytes count as freed, nothing more goes
    await vi.waitFor(() => expect(w.records('unload')).toHaveLength(1));
    expect(w.records('unload')[0]).toMatchObject({
      model: 'a',
      level: 'high',
      bytesFreed: 100 * MiB,
      outcome: 'done',
      reason: expect.stringMatching(/^pressure high \(test high\): idle/),
    });
    expect(w.manager.status('a').state).toBe('unloaded');
    expect(w.manager.status('b').state).toBe('ready');
    w.reactions.dispose();
  });

  it('medium: the config the runner starts with is the one the lease and status report', async () => {
    const w = setup();
    w.feed('medium');
    const lease = await w.manager.acquire('a');
    expect(w.started[0]!.config).toMatchObject({ kvCacheKeyType: 'q8_0', contextSize: 4096 });
    expect(lease.config).toEqual(w.started[0]!.config);
    expect(w.manager.status('a').config).toEqual(w.started[0]!.config);
    lease.release();
    expect(w.records('load-policy')).toEqual([
      expect.objectContaining({
        level: 'medium',
        reason: expect.stringMatching(/1 step\(s\) smaller/),
      }),
    ]);
    w.reactions.dispose();
  });

  it('critical: a load is refused with 503 memory_pressure, not as a failure — no back-off once pressure is gone', async () => {
    const w = setup();
    w.feed('critical');
    for (let i = 0; i < 3; i++) {
      const err = await w.manager.acquire('a').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PressureRefusedError);
      expect(err).toMatchObject({ code: 'memory_pressure', status: 503 });
    }
    expect(w.started).toEqual([]);
    expect(w.manager.status('a').state).toBe('unloaded');
    w.feed('low');
    const lease = await w.manager.acquire('a');
    expect(w.started).toHaveLength(1);
    lease.release();
    w.reactions.dispose();
  });

  it('trims ready runners through the injected trim effect, once per rise; a failing runner counts 0', async () => {
    const trimmed: string[] = [];
    const w = setup({
      trimRunner: async (url) => {
        trimmed.push(url);
        if (trimmed.length === 2) throw new Error('connection refused');
        return { freedBytes: 7 * MiB };
      },
    });
    await w.idle('a');
    await w.idle('b');
    w.feed('medium');
    w.feed('medium');
    await vi.waitFor(() => expect(w.records('trim-prompt-caches')).toHaveLength(1));
    expect(trimmed).toHaveLength(2);
    expect(w.records('trim-prompt-caches')[0]).toMatchObject({
      level: 'medium',
      bytesFreed: 7 * MiB,
      outcome: 'done',
    });
    w.reactions.dispose();
  });

  it('without a trim effect, trims are published as unsupported', async () => {
    const w = setup();
    await w.idle('a');
    w.feed('medium');
    await vi.waitFor(() =>
      expect(w.records('trim-prompt-caches')).toEqual([
        expect.objectContaining({ outcome: 'unsupported', bytesFreed: 0 }),
      ]),
    );
    w.reactions.dispose();
  });

  it('critical with cancelOnCritical: the newest request in flight is cancelled once idle models are not enough', async () => {
    const w = setup({ pinned: [] });
    const first = await w.manager.acquire('a');
    const second = await w.manager.acquire('b');
    w.feed('critical', 500);
    await vi.waitFor(() => expect(second.signal.aborted).toBe(true));
    expect(first.signal.aborted).toBe(false);
    expect(second.signal.reason).toMatchObject({ code: 'request_cancelled', status: 503 });
    await vi.waitFor(() =>
      expect(w.records('cancel-request')).toEqual([
        expect.objectContaining({ model: 'b', level: 'critical', outcome: 'done' }),
      ]),
    );
    first.release();
    second.release();
    w.reactions.dispose();
  });

  it('stops feeding the scheduler once disposed', async () => {
    const w = setup();
    await w.idle('a');
    w.reactions.dispose();
    w.feed('critical', 500);
    await new Promise((r) => setImmediate(r));
    expect(w.manager.status('a').state).toBe('ready');
    expect(w.sampler.events).toEqual([]);
  });
});
