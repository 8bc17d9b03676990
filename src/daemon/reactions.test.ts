import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { MonitorSample, FeedEvent } from '../monitor/sampler.js';
import { attachReactions, type ReactionDeps, type ReactionSource } from './reactions.js';

const MiB = 1024 * 1024;

interface Model {
  name: string;
  state: 'ready' | 'unloaded';
  inFlight: number;
  pid: number;
  lastUsedAt: number;
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

function sample(at: number, level: string, excessMiB: number, models: Model[]): MonitorSample {
  return {
    at,
    pressure: { level, excessBytes: excessMiB * MiB, reasons: [] },
    thermal: { throttled: false },
    processes: models
      .filter((m) => m.state === 'ready')
      .map((m) => ({ role: 'runner', name: m.name, pid: m.pid, rss: 100 * MiB })),
  } as unknown as MonitorSample;
}

function setup(): {
  models: Model[];
  unloads: string[];
  finish: (name: string) => Promise<void>;
  deps: ReactionDeps;
} {
  const models: Model[] = [
    { name: 'alpha', state: 'ready', inFlight: 0, pid: 11, lastUsedAt: 1 },
    { name: 'beta', state: 'ready', inFlight: 0, pid: 12, lastUsedAt: 2 },
  ];
  const unloads: string[] = [];
  const pending = new Map<string, () => void>();
  return {
    models,
    unloads,
    finish: async (name) => {
      models.find((m) => m.name === name)!.state = 'unloaded';
      pending.get(name)?.();
      await new Promise((r) => setImmediate(r));
    },
    deps: {
      list: () => models.filter((m) => m.state === 'ready'),
      unload: (name) => {
        unloads.push(name);
        return new Promise<void>((r) => pending.set(name, r));
      },
      setLoadPolicy: () => {},
    },
  };
}

describe('attachReactions', () => {
  it('unloads the least recently used idle model at high, once, while its unload runs', async () => {
    const { unloads, deps, finish } = setup();
    const sampler = fakeSampler();
    const r = attachReactions(deps, sampler);
    sampler.emitSample(sample(Date.now(), 'high', 50, setup().models));
    sampler.emitSample(sample(Date.now(), 'high', 50, setup().models));
    expect(unloads).toEqual(['alpha']);
    await finish('alpha');
    const done = sampler.events.filter(
      (e) => e.type === 'reaction' && e.reaction.action === 'unload',
    );
    expect(done).toHaveLength(1);
    r.dispose();
  });

  it('does not act on a sample read before the last unload finished: it still counts the freed memory', async () => {
    const { models, unloads, deps, finish } = setup();
    const sampler = fakeSampler();
    const r = attachReactions(deps, sampler);
    sampler.emitSample(sample(Date.now(), 'high', 50, models));
    expect(unloads).toEqual(['alpha']);
    const readBefore = Date.now();
    await new Promise((res) => setTimeout(res, 5));
    await finish('alpha');
    // Read while alpha still held its memory, delivered after its unload finished: no new unload.
    sampler.emitSample(sample(readBefore, 'high', 50, models));
    expect(unloads).toEqual(['alpha']);
    // A sample read afterwards that is still high does unload the next model.
    await new Promise((res) => setTimeout(res, 5));
    sampler.emitSample(sample(Date.now(), 'high', 50, models));
    expect(unloads).toEqual(['alpha', 'beta']);
    r.dispose();
  });

  it('trims prompt caches once per rise to medium and publishes done with the bytes freed', async () => {
    const { models, deps } = setup();
    const reasons: string[] = [];
    deps.trimPromptCaches = (reason) => {
      reasons.push(reason);
      return Promise.resolve(45 * MiB);
    };
    const sampler = fakeSampler();
    const r = attachReactions(deps, sampler);
    sampler.emitSample(sample(Date.now(), 'medium', 0, models));
    sampler.emitSample(sample(Date.now(), 'medium', 0, models));
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toMatch(/pressure medium/);
    await new Promise((res) => setImmediate(res));
    const trims = sampler.events.flatMap((e) =>
      e.type === 'reaction' && e.reaction.action === 'trim-prompt-caches' ? [e.reaction] : [],
    );
    expect(trims).toHaveLength(1);
    expect(trims[0]).toMatchObject({ level: 'medium', outcome: 'done', bytesFreed: 45 * MiB });
    r.dispose();
  });

  it('stops reacting once disposed', () => {
    const { models, unloads, deps } = setup();
    const sampler = fakeSampler();
    attachReactions(deps, sampler).dispose();
    sampler.emitSample(sample(Date.now(), 'critical', 500, models));
    expect(unloads).toEqual([]);
  });
});
