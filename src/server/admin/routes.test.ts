import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import { ModelManager } from '../../scheduler/model-manager.js';
import type { ModelEntry, RunnerExit, RunnerHandle } from '../../scheduler/types.js';
import { createApp } from '../app.js';
import type { ServerCore } from '../core.js';
import { TEST_RUNNER_DEFAULTS } from '../../../test/helpers/server-core.js';

const MiB = 1024 * 1024;

const defaults = TEST_RUNNER_DEFAULTS;

/** A runner handle with the production interface: ready at once, exits when stopped. */
function handle(port: number): RunnerHandle {
  const listeners = new Set<(e: RunnerExit) => void>();
  return {
    url: `http://127.0.0.1:${port}`,
    pid: undefined, // nothing to read from /proc: the ledger's figures are shown
    loadMs: 5,
    onExit: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    stop: () => {
      for (const l of [...listeners]) l({ code: 0, signal: null });
      return Promise.resolve();
    },
  };
}

/** Model "gpu" plans 300 MiB of RAM and 200 MiB on GPU 0; model "cpu" 100 MiB of RAM only. */
function core(
  gpuBudgets: number[],
  ttlMs = Number.POSITIVE_INFINITY,
): { core: ServerCore; manager: ModelManager } {
  const catalog = new Map<string, ModelEntry>([
    ['gpu', { name: 'gpu', path: '/m/gpu.gguf', overrides: {} }],
    ['cpu', { name: 'cpu', path: '/m/cpu.gguf', overrides: {} }],
  ]);
  let port = 20000;
  const manager = new ModelManager({
    catalog: () => catalog,
    defaults,
    stopGraceMs: 10,
    settings: { budgetBytes: 1000 * MiB, gpuBudgetBytes: gpuBudgets },
    plan: (entry, _needs, _room, base) =>
      entry.name === 'gpu'
        ? {
            fits: true,
            config: { ...base, gpuLayers: 99 },
            bytes: 300 * MiB,
            gpuBytes: [200 * MiB],
          }
        : { fits: true, config: base, bytes: 100 * MiB },
    startRunner: () => Promise.resolve(handle(++port)),
    policy: () => ({ pinned: false, ttlMs }),
  });
  return {
    manager,
    core: {
      version: 'test',
      startedAt: Date.now(),
      manager,
      processMemory: () => Promise.resolve(undefined),
      logTail: () => Promise.resolve(''),
      modelFile: async () => {
        throw new Error('this test reads no model files');
      },
    },
  };
}

describe('GET /admin/resources', () => {
  it('shows the ledger of each GPU and the GPU bytes of each model, beside the RAM ledger', async () => {
    const { core: c, manager } = core([500 * MiB]);
    const app = createApp(c, { log: silentLogger(), bodyLimit: 1024 });
    try {
      await manager.load('gpu');
      await manager.load('cpu');
      const r = (await app.inject({ url: '/admin/resources' })).json() as Record<string, unknown>;
      expect(r).toMatchObject({
        budget: 1000 * MiB,
        reserved: 0,
        measured: 400 * MiB,
        free: 600 * MiB,
        gpus: [{ index: 0, budget: 500 * MiB, reserved: 0, measured: 200 * MiB, free: 300 * MiB }],
      });
      expect(r.models).toEqual([
        {
          name: 'cpu',
          state: 'ready',
          allocated: 100 * MiB,
          predicted: 100 * MiB,
          used: null,
          peak: null,
          buffers: null,
          gpus: [],
        },
        {
          name: 'gpu',
          state: 'ready',
          allocated: 300 * MiB,
          predicted: 300 * MiB,
          used: null,
          peak: null,
          buffers: null,
          gpus: [200 * MiB],
        },
      ]);
      expect(manager.status('gpu').gpuAllocated).toEqual([200 * MiB]);
      expect(manager.status('cpu').gpuAllocated).toBeUndefined();
    } finally {
      await app.close();
      await manager.dispose();
    }
  });

  it('shows a GPU without a budget with null budget and free, and no GPUs when none is known', async () => {
    const { core: c, manager } = core([]);
    const app = createApp(c, { log: silentLogger(), bodyLimit: 1024 });
    try {
      expect((await app.inject({ url: '/admin/resources' })).json()).toMatchObject({ gpus: [] });
      await manager.load('gpu');
      expect((await app.inject({ url: '/admin/resources' })).json()).toMatchObject({
        gpus: [{ index: 0, budget: null, reserved: 0, measured: 200 * MiB, free: null }],
      });
    } finally {
      await app.close();
      await manager.dispose();
    }
  });
});

describe('POST /admin/models/:name/pin', () => {
  it('pins a loaded model (no TTL expiry while pinned) and unpins it (the TTL is back)', async () => {
    const { core: c, manager } = core([], 60_000);
    const app = createApp(c, { log: silentLogger(), bodyLimit: 1024 });
    try {
      await manager.load('cpu');
      expect(manager.status('cpu').expiresAt).toEqual(expect.any(Number));
      const pinned = await app.inject({
        method: 'POST',
        url: '/admin/models/cpu/pin',
        payload: { pinned: true },
      });
      expect(pinned.statusCode).toBe(200);
      expect(pinned.json()).toMatchObject({ name: 'cpu', pinned: true, expiresAt: null });
      expect((await app.inject({ url: '/admin/models/cpu' })).json()).toMatchObject({
        pinned: true,
      });
      const unpinned = await app.inject({
        method: 'POST',
        url: '/admin/models/cpu/pin',
        payload: { pinned: false },
      });
      expect(unpinned.json()).toMatchObject({ pinned: false, expiresAt: expect.any(Number) });
    } finally {
      await app.close();
      await manager.dispose();
    }
  });

  it('answers 404 for an unknown model and 400 for a body without a boolean `pinned`', async () => {
    const { core: c, manager } = core([]);
    const app = createApp(c, { log: silentLogger(), bodyLimit: 1024 });
    try {
      const unknown = await app.inject({
        method: 'POST',
        url: '/admin/models/nope/pin',
        payload: { pinned: true },
      });
      expect(unknown.statusCode).toBe(404);
      const bad = await app.inject({
        method: 'POST',
        url: '/admin/models/cpu/pin',
        payload: { pinned: 'yes' },
      });
      expect(bad.statusCode).toBe(400);
      expect(bad.body).toContain('pinned');
      const empty = await app.inject({ method: 'POST', url: '/admin/models/cpu/pin' });
      expect(empty.statusCode).toBe(400);
    } finally {
      await app.close();
      await manager.dispose();
    }
  });
});

describe('GET /admin/logs/:name', () => {
  it('answers 400 naming `follow` for a value other than true/false/1/0', async () => {
    const { core: c, manager } = core([]);
    const app = createApp(c, { log: silentLogger(), bodyLimit: 1024 });
    try {
      const res = await app.inject({ url: '/admin/logs/cpu?follow=maybe' });
      expect(res.statusCode).toBe(400);
      expect(res.body).toContain('follow');
      // A core that cannot follow (no log file path) answers with the tail.
      const tail = await app.inject({ url: '/admin/logs/cpu?follow=true' });
      expect(tail.statusCode).toBe(200);
      expect(tail.body).toBe('');
    } finally {
      await app.close();
      await manager.dispose();
    }
  });
});
