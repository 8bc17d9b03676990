import type { FastifyInstance } from 'fastify';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ConfigInput } from '../../src/config/schema.js';
import { Headroom } from '../../src/daemon/headroom.js';
import type { RunnerConfig } from '../../src/engines/types.js';
import { fileIdentity, MeasuredStore } from '../../src/planner/index.js';
import { silentLogger } from '../../src/lib/logger.js';
import type { ManagerEvent } from '../../src/scheduler/model-manager.js';
import { createApp } from '../../src/server/app.js';
import { cachedModel } from '../helpers/models.js';

/**
 * The scheduler against real runner processes (test/fixtures/fake-runner.mjs, real sockets and
 * real memory) on small forged GGUF files (the planner reads their headers). The HTTP app runs
 * in-process. Races are made deterministic by waiting on states and events, never on timers.
 */

const FAKE = path.resolve(import.meta.dirname, '../fixtures/fake-runner.mjs');

interface Setup {
  h: Headroom;
  app: FastifyInstance;
  events: ManagerEvent[];
  /** Bytes the planner predicts for one model (all three are alike). */
  predicted: number;
  base: string;
}

let current: Setup | undefined;
afterEach(async () => {
  await current?.app.close();
  await current?.h.dispose();
  current = undefined;
});

async function setup(opts: {
  flags?: Record<string, string[]>;
  config?: ConfigInput;
  /** Budget in models: the cap is this many predictions plus a little. */
  fitModels?: number;
}): Promise<Setup> {
  const home = await mkdtemp(path.join(os.tmpdir(), 'headroom-sched-'));
  const dir = path.join(home, 'gguf');
  await mkdir(dir, { recursive: true });
  for (const [i, name] of ['a', 'b', 'c'].entries()) {
    const src = await cachedModel(`sched-${name}`, {
      params: 5_000_000,
      type: 'f16',
      ctx: 2048,
      seed: 11 + i,
    });
    await copyFile(src, path.join(dir, `${name}.gguf`));
  }
  const h = await Headroom.create({
    home,
    log: silentLogger(),
    config: {
      modelDirs: [dir],
      demoModel: false,
      monitor: { enabled: false },
      runner: { contextSize: 1024 },
      ...opts.config,
    } as ConfigInput,
    // The config goes last, as the embedded runner gets it: the fake echoes it in GET /stats.
    runnerSpawn: (config, entry) => ({
      command: process.execPath,
      args: [
        FAKE,
        ...(opts.flags?.[entry.name] ?? opts.flags?.['*'] ?? []),
        JSON.stringify(config),
      ],
    }),
  });
  const events: ManagerEvent[] = [];
  h.manager.on('event', (e) => events.push(e));
  const app = createApp(h, { log: silentLogger(), bodyLimit: 1 << 20 });
  // A real socket: the proxy path streams through the client's socket.
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  // One load tells the prediction; then the budget is set to fit `fitModels` of them.
  await h.manager.load('a');
  const predicted = h.manager.status('a').predicted!;
  await h.manager.unload('a');
  h.manager.setBudget(Math.round(predicted * ((opts.fitModels ?? 2) + 0.5)));
  events.length = 0;
  current = { h, app, events, predicted, base };
  void rm; // the home is left for inspection on failure; the OS cleans tmp
  return current;
}

interface Res {
  statusCode: number;
  headers: Record<string, string>;
  json: () => { error: { code: string } } & Record<string, unknown>;
}

async function call(method: 'GET' | 'POST', p: string, body?: unknown): Promise<Res> {
  const r = await fetch(new URL(p, current!.base), {
    method,
    ...(body !== undefined
      ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
      : {}),
  });
  const text = await r.text();
  return {
    statusCode: r.status,
    headers: Object.fromEntries(r.headers.entries()),
    json: () => JSON.parse(text) as ReturnType<Res['json']>,
  };
}

const chat = (_app: FastifyInstance, model: string) =>
  call('POST', '/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }] });

async function until(cond: () => boolean, what: string): Promise<void> {
  await vi.waitFor(
    () => {
      if (!cond()) throw new Error(`gave up waiting for ${what}`);
    },
    { timeout: 20_000, interval: 10 },
  );
}

describe('scheduler with real runner processes', () => {
  it('coalesces concurrent requests into one load', async () => {
    const { app, events } = await setup({ flags: { '*': ['--load-ms=300'] } });
    const res = await Promise.all([chat(app, 'b'), chat(app, 'b'), chat(app, 'b')]);
    expect(res.map((r) => r.statusCode)).toEqual([200, 200, 200]);
    expect(events.filter((e) => e.type === 'load-start' && e.model === 'b')).toHaveLength(1);
  });

  it('evicts the least recently used idle model for room, and logs why', async () => {
    const { app, h, events } = await setup({});
    expect((await chat(app, 'a')).statusCode).toBe(200);
    expect((await chat(app, 'b')).statusCode).toBe(200);
    expect((await chat(app, 'a')).statusCode).toBe(200); // a is now more recent than b
    expect((await chat(app, 'c')).statusCode).toBe(200);
    const unloads = events.filter((e) => e.type === 'unload');
    expect(unloads).toHaveLength(1);
    expect(unloads[0]).toMatchObject({ model: 'b', reason: 'evicted for room' });
    expect((unloads[0] as { detail?: string } | undefined)?.detail).toContain(
      'to make room for "c"',
    );
    expect(h.manager.list().map((m) => m.state)).toEqual(['ready', 'unloaded', 'ready']);
    const r = (await call('GET', '/admin/resources')).json() as unknown as {
      reserved: number;
      measured: number;
      budget: number;
      models: Array<{ name: string; buffers: unknown }>;
    };
    expect(r.reserved + r.measured).toBeLessThanOrEqual(r.budget);
    expect(r.models.map((m) => m.name)).toEqual(['a', 'c']);
    expect(r.models[0]?.buffers).toMatchObject({ model: expect.any(Number) });
  });

  it('drains: a request in flight finishes before its model stops', async () => {
    const { app, h } = await setup({ flags: { '*': ['--reply-ms=600'] } });
    const inFlight = chat(app, 'a');
    await until(() => h.manager.status('a').inFlight === 1, 'a request in flight');
    const unloaded = call('POST', '/admin/models/a/unload', {});
    await until(() => h.manager.status('a').state === 'draining', 'draining');
    const res = await inFlight;
    expect(res.statusCode).toBe(200);
    expect((await unloaded).json()).toMatchObject({ name: 'a', state: 'unloaded' });
  });

  it('unloads an idle model once its TTL has passed, never before', async () => {
    const { app, h, events } = await setup({ config: { models: { a: { ttl: '400ms' } } } });
    expect((await chat(app, 'a')).statusCode).toBe(200);
    const s = h.manager.status('a');
    expect(s.expiresAt! - s.lastUsedAt!).toBe(400);
    await until(() => h.manager.status('a').state === 'unloaded', 'the TTL unload');
    const unload = events.find((e) => e.type === 'unload');
    expect(unload).toMatchObject({ model: 'a', reason: 'idle TTL expired' });
    expect(Date.now()).toBeGreaterThanOrEqual(s.expiresAt!);
  });

  it('answers 429 with Retry-After when a model queue is full', async () => {
    const { app, h } = await setup({
      flags: { '*': ['--reply-ms=500'] },
      config: { scheduler: { queue: { maxLength: 2 } } },
    });
    await h.manager.load('a');
    const first = chat(app, 'a');
    await until(() => h.manager.status('a').inFlight === 1, 'first in flight');
    const queued = [chat(app, 'a'), chat(app, 'a')];
    await until(() => h.manager.status('a').queued === 2, 'two queued');
    const over = await chat(app, 'a');
    expect(over.statusCode).toBe(429);
    expect(over.headers['retry-after']).toMatch(/^\d+$/);
    expect(over.json().error.code).toBe('queue_full');
    expect((await first).statusCode).toBe(200);
    expect((await Promise.all(queued)).map((r) => r.statusCode)).toEqual([200, 200]);
  });

  it('cancels a request in flight when headroom must (critical pressure): 503, runner freed', async () => {
    const { app, h } = await setup({ flags: { '*': ['--reply-ms=20000'] } });
    const answer = chat(app, 'a');
    await until(() => h.manager.status('a').inFlight === 1, 'the request to reach the runner');
    expect(await h.manager.cancelRequest('a', 'pressure critical (test)')).toBe(true);
    const res = await answer;
    expect(res.statusCode).toBe(503);
    expect(res.json().error.code).toBe('request_cancelled');
    expect(res.headers['retry-after']).toBe('5');
    await until(() => h.manager.status('a').inFlight === 0, 'the lease to be released');
  });

  it('under pressure the runner runs the config the scheduler reports, and its measurement is recorded under it', async () => {
    const { app, h } = await setup({});
    // What the monitor reports at medium (the sampler is off here: the test is the monitor).
    h.manager.reportPressure({
      level: 'medium',
      excessBytes: 0,
      throttled: false,
      reasons: ['test'],
      sampledAt: Date.now(),
    });
    expect((await chat(app, 'b')).statusCode).toBe(200);
    const status = h.manager.status('b');
    const running = (await (await fetch(new URL('/stats', status.url))).json()) as {
      config: RunnerConfig;
    };
    expect(running.config).toEqual(status.config);
    // Planned one step smaller: the KV cache quantised (flash attention is on by default).
    expect(running.config).toMatchObject({ kvCacheKeyType: 'q8_0', kvCacheValueType: 'q8_0' });
    const models = (await call('GET', '/v1/models')).json() as unknown as {
      data: Array<{ id: string; context_size?: number }>;
    };
    expect(models.data.find((m) => m.id === 'b')?.context_size).toBe(running.config.contextSize);
    // The measurement is the running config's: a later plan of the full config does not read it.
    const file = await fileIdentity(status.path);
    const storeFile = path.join(h.layout.stateDir, 'footprints.json');
    await vi.waitFor(
      async () => {
        const store = await MeasuredStore.create(storeFile);
        expect(store.lookup({ file, config: running.config })).toBeDefined();
      },
      { timeout: 20_000, interval: 50 },
    );
    const store = await MeasuredStore.create(storeFile);
    expect(
      store.lookup({
        file,
        config: { ...running.config, kvCacheKeyType: 'f16', kvCacheValueType: 'f16' },
      }),
    ).toBeUndefined();
  });

  it('at critical pressure a load is refused with 503 and guidance, and the refusals do not back the model off', async () => {
    const { app, h, events } = await setup({});
    const report = (level: 'critical' | 'low') =>
      h.manager.reportPressure({
        level,
        excessBytes: 0,
        throttled: false,
        reasons: [],
        sampledAt: Date.now(),
      });
    report('critical');
    for (let i = 0; i < 3; i++) {
      const res = await chat(app, 'c');
      expect(res.statusCode).toBe(503);
      expect(res.json().error.code).toBe('memory_pressure');
      expect(res.headers['retry-after']).toBe('5');
    }
    expect(events.filter((e) => e.type === 'load-start' || e.type === 'load-failed')).toEqual([]);
    report('low');
    expect((await chat(app, 'c')).statusCode).toBe(200);
  });

  it('recovers after a runner crash: the next request loads it again', async () => {
    const { app, h, events } = await setup({});
    expect((await chat(app, 'a')).statusCode).toBe(200);
    const url = h.manager.status('a').url!;
    await fetch(new URL('/crash?code=9', url)).catch(() => undefined);
    await until(() => h.manager.status('a').state === 'failed', 'the crash to be seen');
    expect(h.manager.status('a').lastExit).toMatchObject({ code: 9 });
    expect((await chat(app, 'a')).statusCode).toBe(200);
    expect(h.manager.status('a').state).toBe('ready');
    expect(events.some((e) => e.type === 'runner-exit' && !e.expected)).toBe(true);
  });
});
