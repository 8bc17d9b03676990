import { describe, expect, it, vi } from 'vitest';
import { TEST_RUNNER_DEFAULTS } from '../../test/helpers/server-core.js';
import type { RunnerConfig } from '../engines/types.js';
import { ModelManager, ModelNotFoundError } from './model-manager.js';
import type { CoreSettings } from './core.js';
import type { ModelEntry, RunnerExit, RunnerHandle } from './types.js';

/** A runner double with the production interface; the test decides when loads finish. */
class FakeRunner implements RunnerHandle {
  readonly url: string;
  readonly pid: number;
  readonly loadMs = 5;
  stopped = 0;
  #listeners = new Set<(e: RunnerExit) => void>();
  constructor(pid: number) {
    this.pid = pid;
    this.url = `http://127.0.0.1:${10000 + pid}`;
  }
  onExit(l: (e: RunnerExit) => void): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }
  /** The grace each stop() was given. */
  readonly graces: Array<number | undefined> = [];
  async stop(opts: { graceMs?: number } = {}): Promise<void> {
    this.graces.push(opts.graceMs);
    this.stopped++;
    this.crash({ code: 0, signal: null });
  }
  crash(exit: RunnerExit): void {
    for (const l of [...this.#listeners]) l(exit);
  }
}

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const defaults = TEST_RUNNER_DEFAULTS;

function setup(
  settings: Partial<CoreSettings> = {},
  bytesPerLoad = 0,
  prepare?: (entry: ModelEntry) => Promise<void>,
  stopGraceMs = 10,
) {
  const catalog = new Map<string, ModelEntry>([
    ['a', { name: 'a', path: '/m/a.gguf', overrides: {} }],
    ['b', { name: 'b', path: '/m/b.gguf', overrides: { contextSize: 2048 } }],
  ]);
  const starts: Array<{
    name: string;
    config: RunnerConfig;
    done: ReturnType<typeof deferred<RunnerHandle>>;
  }> = [];
  let pid = 100;
  const manager = new ModelManager({
    catalog: () => catalog,
    defaults,
    stopGraceMs,
    settings,
    plan: (_e, _n, _room, base) => ({ fits: true, config: base, bytes: bytesPerLoad }),
    ...(prepare ? { prepare } : {}),
    startRunner: (entry, config) => {
      const done = deferred<RunnerHandle>();
      starts.push({ name: entry.name, config, done });
      return done.promise;
    },
  });
  const finishLoad = (i: number) => {
    const r = new FakeRunner(++pid);
    starts[i]!.done.resolve(r);
    return r;
  };
  return { manager, starts, finishLoad, catalog };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('ModelManager', () => {
  it('gives a runner evicted for memory pressure a short grace, others the configured one', async () => {
    const { manager, finishLoad } = setup({}, 1 << 20, undefined, 5000);
    const a = manager.acquire('a');
    await tick();
    const runner = finishLoad(0);
    (await a).release();
    manager.reportPressure({
      level: 'high',
      excessBytes: 1 << 20,
      throttled: false,
      reasons: ['test'],
      sampledAt: Date.now() + 1000,
    });
    await tick();
    await tick();
    expect(runner.graces).toEqual([1000]);
    const b = manager.acquire('b');
    await tick();
    const other = finishLoad(1);
    (await b).release();
    await manager.unload('b');
    expect(other.graces).toEqual([5000]);
  });

  it('shares one load among concurrent requests (single flight)', async () => {
    const { manager, starts, finishLoad } = setup();
    const leases = [manager.acquire('a'), manager.acquire('a'), manager.acquire('a')];
    await tick();
    expect(starts).toHaveLength(1);
    expect(manager.status('a')).toMatchObject({ state: 'loading', queued: 3 });
    const runner = finishLoad(0);
    // One slot (parallel 1): the requests are served one after the other, in order.
    const first = await leases[0]!;
    expect(first.url).toBe(runner.url);
    expect(first.timing.loadMs).toBe(5);
    expect(manager.status('a')).toMatchObject({ inFlight: 1, queued: 2 });
    first.release();
    first.release(); // idempotent
    const second = await leases[1]!;
    expect(manager.status('a')).toMatchObject({ inFlight: 1, queued: 1 });
    second.release();
    (await leases[2]!).release();
    expect(manager.status('a').inFlight).toBe(0);
    expect(starts).toHaveLength(1);
  });

  it('prepares (reads the file) before a load, not for requests a ready runner serves', async () => {
    const prepared: string[] = [];
    const { manager, finishLoad } = setup({}, 0, async (e) => void prepared.push(e.name));
    const first = manager.acquire('a');
    await tick();
    finishLoad(0);
    (await first).release();
    expect(prepared).toEqual(['a']);
    (await manager.acquire('a')).release();
    (await manager.acquire('a')).release();
    expect(prepared).toEqual(['a']);
    await manager.unload('a');
    const again = manager.acquire('a');
    await tick();
    finishLoad(1);
    (await again).release();
    expect(prepared).toEqual(['a', 'a']);
  });

  it('cancels a request in flight on the model named, with a 503 reason, once', async () => {
    const { manager, finishLoad } = setup();
    const pending = manager.acquire('a');
    await tick();
    finishLoad(0);
    const lease = await pending;
    expect(lease.signal.aborted).toBe(false);
    expect(await manager.cancelRequest('b', 'pressure critical')).toBe(false);
    expect(await manager.cancelRequest('a', 'pressure critical')).toBe(true);
    expect(lease.signal.aborted).toBe(true);
    expect(lease.signal.reason).toMatchObject({ code: 'request_cancelled', status: 503 });
    // Already cancelled: nothing else to cancel until it is released.
    expect(await manager.cancelRequest('a', 'again')).toBe(false);
    lease.release();
    expect(manager.status('a').inFlight).toBe(0);
    expect(await manager.cancelRequest('a', 'nothing left')).toBe(false);
  });

  it('merges per-model overrides over the defaults', async () => {
    const { manager, starts } = setup();
    void manager.acquire('b').catch(() => undefined);
    await tick();
    expect(starts[0]!.config).toMatchObject({
      modelPath: '/m/b.gguf',
      contextSize: 2048,
      threads: 1,
    });
  });

  it('fails every waiter of a failed load with its reason, and tries again on the next request', async () => {
    const { manager, starts, finishLoad } = setup();
    const a = manager.acquire('a');
    const b = manager.acquire('a');
    await tick();
    starts[0]!.done.reject(new Error('bad magic'));
    await expect(a).rejects.toThrow(/Loading the model "a" failed: bad magic/);
    await expect(b).rejects.toThrow(/bad magic/);
    expect(manager.status('a')).toMatchObject({ state: 'failed', lastError: 'bad magic' });
    const c = manager.acquire('a');
    await tick();
    expect(starts).toHaveLength(2);
    finishLoad(1);
    (await c).release();
  });

  it('rejects unknown models with the known names', async () => {
    const { manager } = setup();
    const err = await manager.acquire('zzz').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelNotFoundError);
    expect((err as ModelNotFoundError).status).toBe(404);
    expect((err as Error).message).toContain('a, b');
  });

  it('lets a waiter leave without cancelling the shared load', async () => {
    const { manager, starts, finishLoad } = setup();
    const controller = new AbortController();
    const leaving = manager.acquire('a', { signal: controller.signal });
    const staying = manager.acquire('a');
    await tick();
    controller.abort(new Error('client left'));
    await expect(leaving).rejects.toThrow('client left');
    finishLoad(0);
    const lease = await staying;
    expect(manager.status('a').inFlight).toBe(1);
    lease.release();
    expect(starts).toHaveLength(1);
  });

  it('marks a crashed runner failed and loads again on the next request', async () => {
    const { manager, starts, finishLoad } = setup();
    const p = manager.acquire('a');
    await tick();
    const runner = finishLoad(0);
    (await p).release();
    runner.crash({ code: null, signal: 'SIGKILL' });
    await tick();
    expect(manager.status('a')).toMatchObject({ state: 'failed', lastExit: { signal: 'SIGKILL' } });
    const q = manager.acquire('a');
    await tick();
    expect(starts).toHaveLength(2);
    finishLoad(1);
    (await q).release();
    expect(manager.status('a').state).toBe('ready');
  });

  it('drains before unloading: no new grants, stops after the last lease ends', async () => {
    const { manager, starts, finishLoad } = setup();
    const p = manager.acquire('a');
    await tick();
    const runner = finishLoad(0);
    const lease = await p;
    const unloading = manager.unload('a');
    await tick();
    expect(manager.status('a').state).toBe('draining');
    expect(runner.stopped).toBe(0);
    // A request for a draining model waits in the queue and is served by a new load.
    const later = manager.acquire('a');
    await tick();
    expect(manager.status('a').queued).toBe(1);
    lease.release();
    const s = await unloading;
    expect(runner.stopped).toBe(1);
    expect(s.state).toBe('loading');
    expect(starts).toHaveLength(2);
    finishLoad(1);
    (await later).release();
  });

  it('answers 429 with Retry-After once the queue is full', async () => {
    const { manager, finishLoad } = setup({ maxQueue: 2 });
    const first = manager.acquire('a');
    const second = manager.acquire('a');
    await tick();
    await expect(manager.acquire('a')).rejects.toMatchObject({
      status: 429,
      code: 'queue_full',
      details: { retryAfterSeconds: 1 },
    });
    finishLoad(0);
    (await first).release();
    (await second).release();
  });

  it('a queued request whose client leaves never starts a load', async () => {
    const { manager, starts } = setup({ budgetBytes: 100 }, 100);
    const a = manager.acquire('a');
    await tick();
    const controller = new AbortController();
    const b = manager.acquire('b', { signal: controller.signal }); // waits: a holds the budget
    await tick();
    controller.abort(new Error('client left'));
    await expect(b).rejects.toThrow('client left');
    expect(manager.status('b').queued).toBe(0);
    expect(starts.map((x) => x.name)).toEqual(['a']);
    void a.catch(() => undefined);
  });

  it('force-unloads without waiting for leases', async () => {
    const { manager, finishLoad } = setup();
    const p = manager.acquire('a');
    await tick();
    const runner = finishLoad(0);
    await p;
    const s = await manager.unload('a', { force: true });
    expect(runner.stopped).toBe(1);
    expect(s.state).toBe('unloaded');
  });

  it('restarts a runner whose measured resident set grew past its plan (recycle), when idle', async () => {
    const MiB = 2 ** 20;
    let rss = 100 * MiB;
    const starts: RunnerHandle[] = [];
    const manager = new ModelManager({
      catalog: () => new Map([['a', { name: 'a', path: '/m/a.gguf', overrides: {} }]]),
      defaults,
      stopGraceMs: 10,
      settings: { recycle: { growthBytes: 16 * MiB, fraction: 0, minRequests: 2 } },
      plan: (_e, _n, _room, base) => ({ fits: true, config: base, bytes: 100 * MiB }),
      startRunner: async () => {
        const r = new FakeRunner(200 + starts.length);
        starts.push(r);
        return r;
      },
      measure: async () => ({ charge: rss, rss, peak: rss }),
      measureIntervalMs: 5,
    });
    const unloads: string[] = [];
    manager.on('event', (e: { type: string; reason?: string }) => {
      if (e.type === 'unload') unloads.push(e.reason ?? '');
    });
    (await manager.acquire('a')).release();
    (await manager.acquire('a')).release();
    rss = 130 * MiB; // 30 MiB past the plan: more than the 16 allowed
    // The next measurement (every 5 ms) sees it.
    await vi.waitFor(() => expect(unloads).toEqual(['recycled: grew past its plan']));
    expect(manager.status('a').state).not.toBe('ready');
    rss = 100 * MiB;
    (await manager.acquire('a')).release(); // loads it again
    expect(starts).toHaveLength(2);
    await manager.dispose();
  });

  it('stops every runner on dispose, and refuses new requests after', async () => {
    const { manager, finishLoad } = setup();
    const pa = manager.acquire('a');
    const pb = manager.acquire('b');
    await tick();
    const ra = finishLoad(0);
    const rb = finishLoad(1);
    (await pa).release();
    (await pb).release();
    await manager.dispose();
    await manager.dispose();
    expect([ra.stopped, rb.stopped]).toEqual([1, 1]);
    await expect(manager.acquire('a')).rejects.toMatchObject({ code: 'model_unavailable' });
    expect(manager.list().map((m) => m.state)).toEqual(['unloaded', 'unloaded']);
  });
});
