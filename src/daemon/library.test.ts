import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { normaliseConfig } from '../config/load.js';
import type { FeedEvent, MonitorFeed, MonitorSample } from '../monitor/feed.js';
import type { ManagerEvent, ResourcesView } from '../scheduler/model-manager.js';
import type { ModelStatus } from '../scheduler/model-manager.js';
import {
  HeadroomEvents,
  modelMetrics,
  pressureConfig,
  resourceLimits,
  systemResources,
} from './library.js';

describe('modelMetrics', () => {
  it('gives each model its saved conversation states, loaded or not', () => {
    const m = new Manager();
    const status = { name: 'a', path: '/a.gguf', state: 'unloaded', inFlight: 0, queued: 0 };
    const manager = Object.assign(m, { list: () => [status as unknown as ModelStatus] });
    const saved = (model: string) =>
      model === 'a' ? { entries: 2, bytes: 3000 } : { entries: 0, bytes: 0 };
    expect(modelMetrics(manager as never, saved)).toEqual([
      expect.objectContaining({
        model: 'a',
        memoryUsage: null,
        savedState: { entries: 2, bytes: 3000 },
      }),
    ]);
  });
});

/** The manager's event side and ledger, as HeadroomEvents reads them. */
class Manager extends EventEmitter<{ event: [ManagerEvent] }> {
  view: ResourcesView = {
    ledger: { budget: 1000, reserved: 0, measured: 0, free: 1000 },
    gpus: [],
    models: [],
  };
  resources(): ResourcesView {
    return this.view;
  }
  list(): [] {
    return [];
  }
}

function feed(): MonitorFeed & { push(e: FeedEvent): void } {
  const listeners = new Set<(e: FeedEvent) => void>();
  return {
    history: () => [],
    latest: () => undefined,
    level: () => 'medium',
    alerts: () => ({ active: [], recent: [] }),
    subscribe: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    push: (e) => listeners.forEach((l) => l(e)),
  };
}

const config = {
  engine: 'llama-server',
  modelPath: '/m.gguf',
  contextSize: 512,
  parallel: 1,
} as unknown as Extract<ManagerEvent, { type: 'load-start' }>['config'];

describe('HeadroomEvents', () => {
  it('joins a load-start to its load-done, and names an unload by its stable cause', () => {
    const m = new Manager();
    const events = new HeadroomEvents(m);
    const seen: unknown[] = [];
    events.on('load', (e) => seen.push(['load', e]));
    events.on('unload', (e) => seen.push(['unload', e]));
    events.on('crash', (e) => seen.push(['crash', e]));
    m.emit('event', { type: 'load-start', model: 'a', config, predicted: 300, degraded: true });
    m.view = { ...m.view, ledger: { budget: 1000, reserved: 0, measured: 400, free: 600 } };
    m.emit('event', { type: 'load-done', model: 'a', loadMs: 12, pid: 7 });
    m.view = { ...m.view, ledger: { budget: 1000, reserved: 0, measured: 0, free: 1000 } };
    m.emit('event', {
      type: 'unload',
      model: 'a',
      reason: 'idle TTL expired',
      cause: 'ttl',
      bytes: 400,
    });
    m.emit('event', {
      type: 'runner-exit',
      model: 'a',
      exit: { code: null, signal: 'SIGKILL' },
      expected: true,
    });
    m.emit('event', {
      type: 'runner-exit',
      model: 'b',
      exit: { code: null, signal: 'SIGKILL' },
      expected: false,
    });
    expect(seen).toEqual([
      ['load', { model: 'a', loadMs: 12, pid: 7, config, predicted: 300, degraded: true }],
      ['unload', { model: 'a', reason: 'ttl', message: 'idle TTL expired', bytes: 400 }],
      ['crash', { model: 'b', code: null, signal: 'SIGKILL' }],
    ]);
    // The peak is the largest ledger total seen at any event, not the total now.
    expect(events.peakAllocated).toBe(400);
    expect(systemResources(m, undefined, events.peakAllocated).peakMemory).toBe(400);
  });

  it("passes on the monitor's samples, level changes and alerts, and stops after dispose()", () => {
    const m = new Manager();
    const f = feed();
    const events = new HeadroomEvents(m);
    events.attach(f);
    const seen: string[] = [];
    events.on('sample', (s) => seen.push(`sample ${s.seq}`));
    events.on('pressure', (c) => seen.push(`pressure ${c.from}->${c.to}`));
    events.on('alert', (a) => seen.push(`alert ${a.id}`));
    f.push({ type: 'sample', sample: { seq: 3 } as MonitorSample });
    f.push({ type: 'level-change', change: { at: 1, from: 'low', to: 'high', reasons: [] } });
    f.push({
      type: 'alert',
      alert: {
        id: 'leak:daemon',
        severity: 'warn',
        kind: 'leak',
        component: 'daemon',
        message: 'm',
        recommendation: 'r',
        since: 1,
        at: 1,
      },
    });
    events.dispose();
    f.push({ type: 'sample', sample: { seq: 4 } as MonitorSample });
    m.emit('event', { type: 'load-failed', model: 'a', error: 'x' });
    expect(seen).toEqual(['sample 3', 'pressure low->high', 'alert leak:daemon']);
  });
});

describe('views', () => {
  it('renders "no limit" as null and units as numbers', () => {
    const c = normaliseConfig({ scheduler: { ttl: 'never', budget: { cap: '2GiB' } } });
    const m = new Manager();
    m.view = {
      ...m.view,
      ledger: { budget: Infinity, reserved: 5, measured: 7, free: Infinity },
    };
    expect(resourceLimits(c, m)).toMatchObject({
      maxLoadedModels: null,
      budgetBytes: null,
      inactivityTimeoutMs: null,
      budget: { fraction: 0.8, capBytes: 2 * 1024 ** 3, reserveBytes: 1024 ** 3 },
      queue: { maxLength: 32, maxWaitMs: 300_000 },
    });
    const s = systemResources(m, feed(), 0);
    expect(s).toMatchObject({
      budget: null,
      freeMemory: null,
      allocatedMemory: 12,
      peakMemory: 12,
      pressure: { level: 'medium', monitor: true },
    });
    expect(pressureConfig(c, undefined)).toMatchObject({
      enabled: true,
      intervalMs: 1000,
      level: 'low',
    });
  });
});
