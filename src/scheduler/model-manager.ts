import { EventEmitter } from 'node:events';
import type { RunnerConfig } from '../engines/types.js';
import { abortReason, throwIfAborted } from '../lib/abort.js';
import { HeadroomError, describeError } from '../lib/errors.js';
import {
  SchedulerCore,
  type CancelOrder,
  type CoreSettings,
  type GpuLedgerView,
  type LedgerView,
  type ModelPolicy,
  type Needs,
  type PlanOutcome,
  type Rejection,
  type StopOrder,
  type StopReason,
  type TrimOrder,
} from './core.js';
import type { LoadPolicy, PressureReport } from './pressure.js';
import type { ModelEntry, ModelState, RunnerExit, RunnerHandle, StartRunner } from './types.js';
import {
  InsufficientMemoryError,
  ModelBackoffError,
  ModelLoadError,
  ModelNotFoundError,
  ModelUnavailableError,
  PressureRefusedError,
  QueueFullError,
} from './errors.js';
import type {
  AcquireOptions,
  Lease,
  ManagerEvent,
  MeasureInput,
  MeasureResult,
  ModelStatus,
  ResourcesView,
} from './manager-types.js';

export * from './errors.js';
export type * from './manager-types.js';

/**
 * The scheduler's shell: runs the decisions of the pure core (core.ts) against real runners.
 * It turns `acquire()` calls into core requests, core effects into runner starts and stops and
 * lease grants, and runner outcomes (ready, failed, exited, measured) back into core inputs.
 * It decides nothing itself: every "whether" is the core's.
 *
 * Contract: `acquire()` resolves with a lease on a ready runner or rejects with a HeadroomError
 * (or the signal's reason); every lease must be released exactly once (release is idempotent).
 * A load is shared by every request waiting for it: a waiter that leaves does not cancel it;
 * a failed load fails every waiter with its reason, and the next request tries again (a model
 * that keeps failing backs off). A queued request whose signal aborts is removed and never
 * starts a load.
 */

export interface ModelManagerOptions {
  /** The models known now (read on every lookup, so a catalog refresh is seen at once). */
  catalog: () => ReadonlyMap<string, ModelEntry>;
  startRunner: StartRunner;
  /** Runner settings for a model before its overrides. */
  defaults: Omit<RunnerConfig, 'modelPath'>;
  /** SIGTERM-to-SIGKILL grace when stopping a runner. */
  stopGraceMs: number;
  now?: () => number;
  /** Scheduler settings (budget, queues, drain, back-off). Defaults: no budget limit, see DEFAULT_SETTINGS. */
  settings?: Partial<CoreSettings>;
  /** Pins and TTLs per model. Defaults to unpinned, TTL never. */
  policy?: (name: string) => ModelPolicy;
  /**
   * Plans a load within `roomBytes` of RAM and `roomGpuBytes[g]` on each GPU with a budget
   * (synchronous: read what it needs in `prepare`). Defaults to the model's configured config at
   * 0 bytes (no planning).
   */
  plan?: (
    entry: ModelEntry,
    needs: Needs,
    roomBytes: number,
    base: RunnerConfig,
    roomGpuBytes: readonly number[],
  ) => PlanOutcome;
  /** Async work before a request is queued (read the GGUF header for `plan`). Errors reject acquire. */
  prepare?: (entry: ModelEntry, signal: AbortSignal | undefined) => Promise<void>;
  /** Measures a ready runner (after ready, then every `measureIntervalMs`); undefined = unknown. */
  measure?: (input: MeasureInput) => Promise<MeasureResult | undefined>;
  /** Defaults to 2000 ms. */
  measureIntervalMs?: number;
  /** Predicted split of a plan, for /admin/resources. */
  buffers?: (model: string) => { model: number; context: number; working: number } | undefined;
  /**
   * Trims one ready runner's prompt caches (memory pressure); resolves with the bytes it freed.
   * Rejects when the runner cannot (counted as 0 and reported). Absent: trims are reported as
   * unsupported.
   */
  trimRunner?: (
    url: string,
    reason: string,
    config: RunnerConfig,
  ) => Promise<{ freedBytes: number }>;
  /**
   * Runs between a ready runner's stop order and its SIGTERM (e.g. saving its sequence state);
   * the runner is stopped when it settles, whatever the outcome. It must bound its own time: the
   * runner keeps its memory (and its ledger charge) until then.
   */
  beforeStop?: (o: BeforeStop) => Promise<void>;
}

/** A ready runner about to be stopped, and why. */
export interface BeforeStop {
  entry: ModelEntry;
  config: RunnerConfig;
  url: string;
  reason: StopReason;
  /** The pressure level that evicted it (reason `pressure`). */
  level?: StopOrder['level'];
  /** Requests still in flight on it. */
  inFlight: number;
}

export const DEFAULT_SETTINGS: CoreSettings = {
  budgetBytes: Number.POSITIVE_INFINITY,
  maxLoadedModels: Number.POSITIVE_INFINITY,
  maxQueue: 32,
  maxWaitMs: 5 * 60_000,
  drainDeadlineMs: 30_000,
  backoffBaseMs: 1000,
  backoffMaxMs: 60_000,
};

interface Pending {
  model: string;
  started: number;
  /** The load this request waited for, if any (for the lease's timing). */
  sawLoad: boolean;
  /** A management load: released as soon as granted. */
  hold: boolean;
  resolve: (lease: Lease) => void;
  reject: (err: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

interface Running {
  id: number;
  entry: ModelEntry;
  config: RunnerConfig;
  predicted: number;
  startedAt: number;
  controller: AbortController;
  runner?: RunnerHandle;
  loadMs?: number;
  loadedAt?: number;
  stopOrdered?: StopOrder;
  stopOrderedAt?: number;
  unsubscribeExit?: () => void;
  measureTimer?: NodeJS.Timeout;
  lastError?: unknown;
}

interface ModelExtra {
  lastExit?: RunnerExit;
  lastLoadError?: unknown;
}

export class ModelManager extends EventEmitter<{ event: [ManagerEvent] }> {
  readonly #opts: ModelManagerOptions;
  readonly #now: () => number;
  readonly #core: SchedulerCore;
  readonly #pending = new Map<number, Pending>();
  /** Leases held by requests in flight, by request id, for cancelling them. */
  readonly #held = new Map<number, { model: string; grantedAt: number; cancel: AbortController }>();
  readonly #running = new Map<number, Running>();
  readonly #extra = new Map<string, ModelExtra>();
  /** Resolvers waiting for a given instance to be gone (unload, dispose). */
  readonly #goneWaiters = new Map<number, Array<() => void>>();
  /** Why a caller unloaded an instance (e.g. a pressure reaction), for the unload event. */
  readonly #unloadReasons = new Map<number, string>();
  /** Pins set at run time (`pin()`), over the configured policy's. */
  readonly #pins = new Map<string, boolean>();
  #nextRequest = 1;
  #timer: NodeJS.Timeout | undefined;
  #timerAt: number | undefined;
  #disposing: Promise<void> | undefined;

  constructor(opts: ModelManagerOptions) {
    super();
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#core = new SchedulerCore({
      settings: { ...DEFAULT_SETTINGS, ...opts.settings },
      now: this.#now,
      policy: (name) => this.#policyOf(name),
      plan: (name, needs, room, gpuRoom) => this.#plan(name, needs, room, gpuRoom),
      effects: {
        startLoad: (o) => this.#startLoad(o.instance, o.model, o.config, o.bytes, o.degraded),
        grant: (r, i) => this.#grant(r, i),
        reject: (r, rej) => this.#reject(r, rej),
        stop: (o) => this.#stop(o),
        trim: (o) => this.#trim(o),
        cancelRequest: (o) => this.#cancelOrdered(o),
        note: (n) => {
          if (n.type === 'load-policy') {
            this.#emitLater({ type: 'load-policy', policy: n.policy });
            return;
          }
          const message =
            n.type === 'waiting-for-room'
              ? `waiting for room: needs ${n.needBytes} bytes, ${n.freeBytes} free`
              : n.type === 'degraded'
                ? `planned smaller to fit: context ${n.contextSize}, ${n.bytes} bytes`
                : n.type === 'backoff'
                  ? `failed ${n.failures} times in a row: no new load before ${new Date(n.untilMs).toISOString()}`
                  : `draining: ${n.inFlight} request(s) in flight, deadline ${new Date(n.deadline).toISOString()}`;
          this.#emitLater({ type: 'note', model: n.model, message });
        },
      },
    });
  }

  /**
   * The catalog's name for `name`: itself, or `name:latest` when only that is known (Ollama's
   * convention: `llama3.2` is `llama3.2:latest`), so both reach one model and one runner.
   */
  resolve(name: string): string {
    const catalog = this.#opts.catalog();
    if (catalog.has(name) || name.includes(':')) return name;
    return catalog.has(`${name}:latest`) ? `${name}:latest` : name;
  }

  /** Names of the models in the catalog, sorted. */
  names(): string[] {
    return [...this.#opts.catalog().keys()].sort();
  }

  /** The runner config a model is loaded with by default. */
  configFor(entry: ModelEntry): RunnerConfig {
    return { ...this.#opts.defaults, ...entry.overrides, modelPath: entry.path };
  }

  /** The ledger: budget, reserved (loads in progress), measured (running), free. */
  ledger(): LedgerView {
    return this.#core.ledger();
  }

  /**
   * A reading of the memory monitor: the scheduler core decides what it means (load policy,
   * trims, evictions, refusals, cancellations) and this shell carries it out.
   */
  reportPressure(report: PressureReport): void {
    this.#call(() => this.#core.pressure(report));
  }

  /** The policy new loads follow now (memory pressure, thermal throttling). */
  loadPolicy(): LoadPolicy {
    return this.#core.loadPolicy();
  }

  /**
   * Applies a reloaded config: the scheduler's limits (queues, waits, drain, back-off, models
   * loaded, recycling), the runner defaults new loads start from, and the stop grace. Runners
   * loaded keep the config they were loaded with.
   */
  reconfigure(change: {
    settings: Omit<CoreSettings, 'budgetBytes' | 'gpuBudgetBytes'>;
    defaults: Omit<RunnerConfig, 'modelPath'>;
    stopGraceMs: number;
  }): void {
    this.#opts.defaults = change.defaults;
    this.#opts.stopGraceMs = change.stopGraceMs;
    this.#call(() => this.#core.updateSettings(change.settings));
  }

  /** Sets the memory budget (bytes); idle models are evicted if the ledger is now over it. */
  setBudget(bytes: number): void {
    this.#call(() => this.#core.setBudget(bytes));
  }

  /** The ledger of each GPU: budget, reserved, measured (the plan's figure: VRAM is not measured), free. */
  gpuLedger(): GpuLedgerView[] {
    return this.#core.gpuLedger();
  }

  /**
   * Sets each GPU's budget (bytes, by device index; an empty list: no GPU limits); idle models
   * holding memory on a GPU now over its budget are evicted.
   */
  setGpuBudgets(bytes: readonly number[]): void {
    this.#call(() => this.#core.setGpuBudgets(bytes));
  }

  /**
   * A lease on a ready runner of `name`, loading it first when needed (after evicting idle
   * models for room). Waits in the model's FIFO queue while its slots are busy.
   * Rejects with ModelNotFoundError (404), QueueFullError (429), ModelLoadError,
   * InsufficientMemoryError, ModelBackoffError, ModelUnavailableError (503) or the signal's reason.
   */
  async acquire(name: string, opts: AcquireOptions = {}): Promise<Lease> {
    return this.#submit(this.resolve(name), opts, true);
  }

  /**
   * Loads a model without taking a lease (management API, preload). `opts` may name the config
   * the load needs (context, KV type, slots): a loaded config that serves it is kept.
   */
  async load(name: string, opts?: AbortSignal | AcquireOptions): Promise<ModelStatus> {
    const o: AcquireOptions = opts instanceof AbortSignal ? { signal: opts } : (opts ?? {});
    name = this.resolve(name);
    await this.#submit(name, o, false);
    return this.status(name);
  }

  /**
   * Stops a model's runner. Without `force` it drains first: no new requests are routed to it
   * and it stops when its last request ends or the drain deadline passes. With `force` it stops
   * at once. Resolves once that runner is gone.
   */
  async unload(
    name: string,
    opts: { force?: boolean; reason?: string } = {},
  ): Promise<ModelStatus> {
    name = this.resolve(name);
    this.#entry(name);
    const id = this.#core.view(name)?.instance?.id;
    if (id !== undefined) {
      const gone = this.#whenGone(id);
      if (opts.reason !== undefined) this.#unloadReasons.set(id, opts.reason);
      this.#call(() => this.#core.unload(name, { force: opts.force === true }));
      await gone;
    }
    return this.status(name);
  }

  /**
   * Cancels the lowest-priority request in flight on `model`: the one granted last, so the
   * request that has run longest (and cost most) survives. Its lease's signal aborts with a 503
   * `request_cancelled` error; the holder stops the runner's work. Resolves false when the model
   * has no request in flight.
   */
  cancelRequest(model: string, reason: string): Promise<boolean> {
    let victim: { model: string; grantedAt: number; cancel: AbortController } | undefined;
    for (const h of this.#held.values()) {
      if (h.model !== model || h.cancel.signal.aborted) continue;
      if (!victim || h.grantedAt >= victim.grantedAt) victim = h;
    }
    if (!victim) return Promise.resolve(false);
    this.#abortHeld(victim, reason);
    return Promise.resolve(true);
  }

  #abortHeld(h: { model: string; cancel: AbortController }, reason: string): void {
    h.cancel.abort(
      new HeadroomError(
        'request_cancelled',
        `headroom cancelled this request to free memory (${reason}); retry when memory pressure is lower.`,
        { status: 503, details: { retryAfterSeconds: 5 } },
      ),
    );
    this.#emitLater({ type: 'note', model: h.model, message: `request cancelled: ${reason}` });
  }

  /**
   * Pins or unpins a model until the daemon stops (the config's pins are the default): a pinned
   * model is never unloaded by its TTL and is evicted last. Throws for an unknown model.
   */
  pin(name: string, pinned: boolean): ModelStatus {
    this.#entry(name);
    this.#pins.set(name, pinned);
    // Re-arms the timer: an unpinned idle model may be past its TTL already.
    this.#call(() => this.#core.tick());
    return this.status(name);
  }

  #policyOf(name: string): ModelPolicy {
    const base = this.#opts.policy?.(name) ?? { pinned: false, ttlMs: Number.POSITIVE_INFINITY };
    const pinned = this.#pins.get(name);
    return pinned === undefined ? base : { ...base, pinned };
  }

  status(name: string): ModelStatus {
    name = this.resolve(name);
    const entry = this.#entry(name);
    const v = this.#core.view(name);
    const extra = this.#extra.get(name);
    const inst = v?.instance;
    const running = inst ? this.#running.get(inst.id) : undefined;
    const pinned = this.#policyOf(name).pinned;
    let state: ModelState;
    if (inst) state = inst.state;
    else state = v?.lastError !== undefined && (v.failures ?? 0) > 0 ? 'failed' : 'unloaded';
    const s: ModelStatus = {
      name,
      path: entry.path,
      state,
      inFlight: inst?.inFlight ?? 0,
      queued: v?.queued ?? 0,
      pinned,
      ...(entry.source ? { source: entry.source } : {}),
    };
    if (inst) {
      s.config = inst.config;
      s.predicted = inst.predicted;
      s.allocated = inst.charge;
      if (inst.gpuCharge.some((b) => b > 0)) s.gpuAllocated = [...inst.gpuCharge];
      s.lastUsedAt = inst.lastUsedAt;
      s.ttlMs = Number.isFinite(inst.ttlMs) ? inst.ttlMs : null;
      if (inst.measured !== undefined) s.measured = inst.measured;
      if (inst.peak !== undefined) s.peak = inst.peak;
      if (inst.expiresAt !== undefined) s.expiresAt = inst.expiresAt;
      if (inst.drainDeadline !== undefined) s.drainDeadline = inst.drainDeadline;
    }
    if (running?.runner) {
      s.pid = running.runner.pid;
      s.url = running.runner.url;
      if (running.loadMs !== undefined) s.loadMs = running.loadMs;
      if (running.loadedAt !== undefined) s.loadedAt = running.loadedAt;
    }
    if (v?.backoffUntil !== undefined) s.backoffUntil = v.backoffUntil;
    if (v?.lastError !== undefined && state !== 'ready') s.lastError = v.lastError;
    if (extra?.lastExit !== undefined) s.lastExit = extra.lastExit;
    return s;
  }

  list(): ModelStatus[] {
    return this.names().map((n) => this.status(n));
  }

  /** The ledger and, per loaded model, allocated / used / peak bytes and the plan's buffers. */
  resources(): ResourcesView {
    const models: ResourcesView['models'] = [];
    for (const m of this.list()) {
      if (m.allocated === undefined) continue;
      const row: ResourcesView['models'][number] = {
        name: m.name,
        state: m.state,
        allocated: m.allocated,
        predicted: m.predicted ?? 0,
        gpus: m.gpuAllocated ?? [],
      };
      if (m.measured !== undefined) row.used = m.measured;
      if (m.peak !== undefined) row.peak = m.peak;
      const b = this.#opts.buffers?.(m.name);
      if (b) row.buffers = b;
      models.push(row);
    }
    return { ledger: this.ledger(), gpus: this.gpuLedger(), models };
  }

  /**
   * Stops taking requests (queued ones are refused), drains busy runners up to the drain
   * deadline, stops the rest; resolves when every runner is gone. Idempotent.
   */
  dispose(): Promise<void> {
    this.#disposing ??= (async () => {
      const ids = [...this.#running.keys()];
      const gone = Promise.all(ids.map((id) => this.#whenGone(id)));
      this.#call(() => this.#core.shutdown());
      await gone;
      clearTimeout(this.#timer);
      this.#timer = undefined;
    })();
    return this.#disposing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  // ---- inputs to the core -------------------------------------------------------------------

  async #submit(name: string, opts: AcquireOptions, hold: boolean): Promise<Lease> {
    const { signal } = opts;
    throwIfAborted(signal);
    const entry = this.#entry(name);
    if (this.#core.closed) throw new ModelUnavailableError(name, 'shutting down');
    // A ready runner serves the request without a plan: skip the file check (a stat per request
    // was a tenth of a millisecond of every request's latency). A load always prepares first.
    if (this.#core.view(name)?.instance?.state !== 'ready') {
      await this.#opts.prepare?.(entry, signal);
      throwIfAborted(signal);
    }
    const id = this.#nextRequest++;
    const needs: Needs = {};
    if (opts.contextSize !== undefined) needs.contextSize = opts.contextSize;
    if (opts.kv !== undefined) needs.kv = opts.kv;
    if (opts.parallel !== undefined) needs.parallel = opts.parallel;
    return new Promise<Lease>((resolve, reject) => {
      const p: Pending = {
        model: name,
        started: this.#now(),
        sawLoad: false,
        hold,
        resolve,
        reject,
      };
      if (signal) {
        p.signal = signal;
        p.onAbort = () => this.#call(() => this.#core.cancel(id));
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.#pending.set(id, p);
      this.#call(() =>
        this.#core.request(
          id,
          name,
          needs,
          opts.keepAliveMs !== undefined ? { keepAliveMs: opts.keepAliveMs } : {},
        ),
      );
      // A request that is queued while its model loads waited for that load.
      if (this.#pending.has(id) && this.#core.view(name)?.instance?.state === 'loading')
        p.sawLoad = true;
    });
  }

  /** Runs a core input, then re-arms the timer and settles unload waiters. */
  #call(fn: () => void): void {
    fn();
    this.#afterCore();
  }

  #afterCore(): void {
    for (const [id, waiters] of this.#goneWaiters) {
      if (this.#running.has(id)) continue;
      this.#goneWaiters.delete(id);
      for (const w of waiters) w();
    }
    const at = this.#core.nextWakeAt();
    if (at === this.#timerAt) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = at;
    if (at === undefined) return;
    // One timer for every deadline (TTL, queue wait, drain); never keeps the process alive.
    this.#timer = setTimeout(
      () => {
        this.#timerAt = undefined;
        this.#call(() => this.#core.tick());
      },
      Math.max(0, Math.min(2 ** 31 - 1, at - this.#now())),
    );
    this.#timer.unref();
  }

  #whenGone(instance: number): Promise<void> {
    if (!this.#running.has(instance)) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.#goneWaiters.get(instance) ?? [];
      list.push(resolve);
      this.#goneWaiters.set(instance, list);
    });
  }

  async #goneWithin(instance: number, timeoutMs: number): Promise<boolean> {
    if (!this.#running.has(instance)) return true;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
      timer.unref();
    });
    try {
      return await Promise.race([this.#whenGone(instance).then(() => true as const), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- effects of the core (synchronous: start async work, never call the core back) --------

  #plan(name: string, needs: Needs, room: number, gpuRoom: readonly number[]): PlanOutcome {
    const entry = this.#opts.catalog().get(name);
    if (!entry)
      return {
        fits: false,
        message: `The model "${name}" is no longer in the catalog.`,
        guidance: [],
      };
    const base = this.configFor(entry);
    if (!this.#opts.plan) {
      const config: RunnerConfig = {
        ...base,
        ...(needs.contextSize !== undefined && needs.contextSize > base.contextSize
          ? { contextSize: needs.contextSize }
          : {}),
        ...(needs.kv !== undefined ? { kvCacheKeyType: needs.kv, kvCacheValueType: needs.kv } : {}),
        ...(needs.parallel !== undefined && needs.parallel > base.parallel
          ? { parallel: needs.parallel }
          : {}),
      };
      return { fits: true, config, bytes: 0 };
    }
    try {
      return this.#opts.plan(entry, needs, room, base, gpuRoom);
    } catch (err) {
      return { fits: false, message: describeError(err), guidance: [] };
    }
  }

  #startLoad(
    instance: number,
    name: string,
    config: RunnerConfig,
    predicted: number,
    degraded: boolean,
  ): void {
    const entry = this.#opts.catalog().get(name) ?? { name, path: config.modelPath, overrides: {} };
    // The load belongs to the model, not to the request that triggered it: it has its own signal.
    const r: Running = {
      id: instance,
      entry,
      config,
      predicted,
      startedAt: this.#now(),
      controller: new AbortController(),
    };
    this.#running.set(instance, r);
    for (const p of this.#pending.values()) if (p.model === name) p.sawLoad = true;
    this.#emitLater({ type: 'load-start', model: name, config, predicted, degraded });
    let started: Promise<RunnerHandle>;
    try {
      started = this.#opts.startRunner(entry, config, r.controller.signal);
    } catch (err) {
      started = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    started.then(
      (runner) => this.#onLoaded(r, runner),
      (err: unknown) => {
        this.#running.delete(instance);
        const aborted = r.stopOrdered !== undefined;
        if (!aborted) {
          this.#extraOf(name).lastLoadError = err;
          this.emit('event', { type: 'load-failed', model: name, error: describeError(err) });
        }
        this.#call(() => this.#core.loadFailed(instance, describeError(err)));
      },
    );
  }

  #onLoaded(r: Running, runner: RunnerHandle): void {
    const name = r.entry.name;
    r.runner = runner;
    r.loadMs = runner.loadMs ?? this.#now() - r.startedAt;
    r.loadedAt = this.#now();
    if (r.stopOrdered) {
      // Stopped while it loaded (unload, shutdown): it never serves; stop it and report the abort.
      void runner.stop({ graceMs: this.#opts.stopGraceMs }).finally(() => {
        this.#running.delete(r.id);
        this.#call(() => this.#core.loadFailed(r.id, 'stopped while loading'));
      });
      return;
    }
    r.unsubscribeExit = runner.onExit((exit) => this.#onExit(r, exit));
    this.emit('event', {
      type: 'load-done',
      model: name,
      loadMs: runner.loadMs ?? 0,
      pid: runner.pid,
    });
    this.#call(() => this.#core.loadSucceeded(r.id, { loadMs: runner.loadMs ?? 0 }));
    this.#scheduleMeasure(r, true);
  }

  #scheduleMeasure(r: Running, first: boolean): void {
    const measure = this.#opts.measure;
    if (!measure || !r.runner) return;
    const run = async (isFirst: boolean): Promise<void> => {
      if (!this.#running.has(r.id) || r.stopOrdered || !r.runner) return;
      let m: MeasureResult | undefined;
      try {
        m = await measure({
          entry: r.entry,
          config: r.config,
          runner: r.runner,
          predicted: r.predicted,
          loadMs: r.loadMs ?? 0,
          first: isFirst,
          served: this.#core.view(r.entry.name)?.instance?.served ?? 0,
        });
      } catch {
        m = undefined; // a process that just exited cannot be read: its exit reports it
      }
      if (!m || !this.#running.has(r.id) || r.stopOrdered) return;
      const before = this.#core.view(r.entry.name)?.instance;
      const changed =
        isFirst || before?.peak === undefined || m.peak > before.peak || m.charge !== before.charge;
      this.#call(() => this.#core.measured(r.id, m));
      if (changed)
        this.emit('event', {
          type: 'measured',
          model: r.entry.name,
          predicted: r.predicted,
          rss: m.rss,
          peak: m.peak,
          charge: m.charge,
        });
    };
    if (first) void run(true);
    const every = this.#opts.measureIntervalMs ?? 2000;
    r.measureTimer = setInterval(() => void run(false), every);
    r.measureTimer.unref();
  }

  #onExit(r: Running, exit: RunnerExit): void {
    if (!this.#running.has(r.id)) return;
    const name = r.entry.name;
    const expected = r.stopOrdered !== undefined;
    this.#extraOf(name).lastExit = exit;
    this.#cleanup(r);
    this.emit('event', { type: 'runner-exit', model: name, exit, expected });
    if (expected) this.#emitUnload(r);
    this.#call(() =>
      this.#core.exited(r.id, {
        message: `runner exited unexpectedly (code ${exit.code ?? '-'}, signal ${exit.signal ?? '-'})`,
      }),
    );
  }

  #cleanup(r: Running): void {
    this.#running.delete(r.id);
    clearInterval(r.measureTimer);
    r.unsubscribeExit?.();
    r.unsubscribeExit = undefined;
  }

  #emitUnload(r: Running): void {
    const o = r.stopOrdered!;
    this.emit('event', {
      type: 'unload',
      model: r.entry.name,
      reason: reasonText(o.reason),
      cause: o.reason,
      detail: o.detail,
      ...(o.inFlight > 0 ? { inFlight: o.inFlight } : {}),
      bytes: o.bytes,
      ...(o.level !== undefined
        ? { level: o.level, ms: Math.max(0, this.#now() - (r.stopOrderedAt ?? this.#now())) }
        : {}),
    });
  }

  /** Trims the ready runners the core names, at once; one event with the bytes they freed. */
  #trim(o: TrimOrder): void {
    const trim = this.#opts.trimRunner;
    const started = this.#now();
    if (!trim) {
      this.#emitLater({
        type: 'trim',
        level: o.level,
        reason: o.reason,
        freedBytes: 0,
        ms: 0,
        outcome: 'unsupported',
        failures: [],
      });
      return;
    }
    const targets = o.runners.flatMap((t) => {
      const r = this.#running.get(t.instance);
      const url = r?.runner?.url;
      return r && url !== undefined ? [{ model: t.model, url, config: r.config }] : [];
    });
    // Started after the core's call returns: the trim function is outside code.
    void Promise.resolve()
      .then(() =>
        Promise.all(
          targets.map(async (t) => {
            try {
              return { freed: (await trim(t.url, o.reason, t.config)).freedBytes };
            } catch (err) {
              return { freed: 0, failure: { model: t.model, error: describeError(err) } };
            }
          }),
        ),
      )
      .then((results) =>
        this.emit('event', {
          type: 'trim',
          level: o.level,
          reason: o.reason,
          freedBytes: results.reduce((a, r) => a + r.freed, 0),
          ms: Math.max(0, this.#now() - started),
          outcome: 'done',
          failures: results.flatMap((r) => (r.failure ? [r.failure] : [])),
        }),
      );
  }

  #cancelOrdered(o: CancelOrder): void {
    const h = this.#held.get(o.request);
    if (h && !h.cancel.signal.aborted) {
      // The lease's holder reacts to the abort synchronously; let the core's call end first.
      queueMicrotask(() => this.#abortHeld(h, o.reason));
      this.#emitLater({
        type: 'request-cancelled',
        model: o.model,
        level: o.level,
        reason: o.reason,
        outcome: 'done',
      });
      return;
    }
    this.#emitLater({
      type: 'request-cancelled',
      model: o.model,
      level: o.level,
      reason: o.reason,
      outcome: 'failed',
      error: 'the request was no longer held',
    });
  }

  #grant(request: number, instance: number): void {
    const p = this.#pending.get(request);
    const r = this.#running.get(instance);
    if (!p || !r?.runner) {
      // Cannot happen (the core grants only ready instances); release so the books stay right.
      queueMicrotask(() => this.#call(() => this.#core.release(request)));
      return;
    }
    this.#pending.delete(request);
    if (p.onAbort) p.signal?.removeEventListener('abort', p.onAbort);
    let released = false;
    const cancel = new AbortController();
    const held = { model: p.model, grantedAt: this.#now(), cancel };
    const lease: Lease = {
      model: p.model,
      url: r.runner.url,
      config: r.config,
      signal: cancel.signal,
      timing: {
        waitedMs: this.#now() - p.started,
        ...(p.sawLoad && r.loadMs !== undefined ? { loadMs: r.loadMs } : {}),
      },
      release: () => {
        if (released) return;
        released = true;
        this.#held.delete(request);
        this.#call(() => this.#core.release(request));
      },
      gone: (timeoutMs) => this.#goneWithin(r.id, timeoutMs),
    };
    if (p.hold) this.#held.set(request, held);
    else queueMicrotask(() => lease.release());
    p.resolve(lease);
  }

  #reject(request: number, rej: Rejection): void {
    const p = this.#pending.get(request);
    if (!p) return;
    this.#pending.delete(request);
    if (p.onAbort) p.signal?.removeEventListener('abort', p.onAbort);
    p.reject(this.#errorFor(p, rej));
  }

  #errorFor(p: Pending, rej: Rejection): unknown {
    switch (rej.kind) {
      case 'cancelled':
        return p.signal?.aborted
          ? abortReason(p.signal)
          : new DOMException(rej.message, 'AbortError');
      case 'queue_full':
      case 'queue_timeout':
        return new QueueFullError(rej.kind, rej.message, rej.retryAfterSeconds ?? 1);
      case 'load_failed': {
        const cause = this.#extraOf(rej.model).lastLoadError;
        if (cause instanceof HeadroomError && cause.status < 500) return cause;
        return new ModelLoadError(rej.model, cause ?? rej.message, rej.retryAfterSeconds);
      }
      case 'backoff':
        return new ModelBackoffError(rej.message, rej.retryAfterSeconds ?? 1);
      case 'no_fit':
        return new InsufficientMemoryError(rej.message, rej.guidance ?? [], rej.retryAfterSeconds);
      case 'shutting_down':
        return new ModelUnavailableError(rej.model, 'shutting down');
      case 'pressure':
        return new PressureRefusedError(
          rej.model,
          rej.message,
          rej.guidance ?? [],
          rej.retryAfterSeconds ?? 5,
        );
    }
  }

  #stop(o: StopOrder): void {
    const r = this.#running.get(o.instance);
    if (!r) return;
    const why = this.#unloadReasons.get(o.instance);
    this.#unloadReasons.delete(o.instance);
    r.stopOrdered = why !== undefined && o.reason === 'unload' ? { ...o, detail: why } : o;
    r.stopOrderedAt = this.#now();
    clearInterval(r.measureTimer);
    if (!r.runner) {
      const reason = new HeadroomError('SCHEDULER_LOAD_CANCELLED', `load cancelled: ${o.detail}`);
      queueMicrotask(() => r.controller.abort(reason));
      return;
    }
    const runner = r.runner;
    const before = this.#opts.beforeStop;
    // Started outside the core's call: a handle may report its exit synchronously.
    void Promise.resolve()
      .then(() =>
        before?.({
          entry: r.entry,
          config: r.config,
          url: runner.url,
          reason: o.reason,
          ...(o.level !== undefined ? { level: o.level } : {}),
          inFlight: o.inFlight,
        }),
      )
      .catch(() => undefined)
      .then(() => runner.stop({ graceMs: stopGrace(o.reason, this.#opts.stopGraceMs) }))
      .finally(() => {
        // The exit listener normally reports first; this covers a handle that does not.
        if (!this.#running.has(r.id)) return;
        this.#cleanup(r);
        this.#emitUnload(r);
        this.#call(() => this.#core.exited(r.id));
      });
  }

  // ---- helpers ------------------------------------------------------------------------------

  #entry(name: string): ModelEntry {
    const catalog = this.#opts.catalog();
    const entry = catalog.get(name);
    if (entry) return entry;
    // A model removed from the catalog keeps its status while it still has a runner.
    for (const r of this.#running.values()) if (r.entry.name === name) return r.entry;
    throw new ModelNotFoundError(name, [...catalog.keys()].sort());
  }

  #extraOf(name: string): ModelExtra {
    let e = this.#extra.get(name);
    if (!e) {
      e = {};
      this.#extra.set(name, e);
    }
    return e;
  }

  /** Events raised inside a core call are emitted after it, so listeners may call back in. */
  #emitLater(e: ManagerEvent): void {
    queueMicrotask(() => this.emit('event', e));
  }
}

/**
 * How long a stopping runner gets between SIGTERM and SIGKILL. An eviction for memory pressure
 * stops an idle runner whose state was saved before: it has nothing left to finish, and the
 * memory is wanted now. Measured in a cgroup near its limit (test/integration/pressure.test.ts):
 * a runner starved of memory outlasted the usual grace of 5 s in about half the runs, while one
 * that is not starved exits within ~50 ms.
 */
const PRESSURE_STOP_GRACE_MS = 1000;

function stopGrace(reason: StopReason, configured: number): number {
  return reason === 'pressure' ? Math.min(configured, PRESSURE_STOP_GRACE_MS) : configured;
}

function reasonText(r: StopReason): string {
  switch (r) {
    case 'ttl':
      return 'idle TTL expired';
    case 'evicted':
      return 'evicted for room';
    case 'max-models':
      return 'evicted: maxLoadedModels';
    case 'over-budget':
      return 'evicted: measured over budget';
    case 'unload':
      return 'unload';
    case 'forced':
      return 'forced unload';
    case 'drain-deadline':
      return 'drain deadline passed';
    case 'reload':
      return 'reload with a larger config';
    case 'shutdown':
      return 'shutdown';
    case 'load-cancelled':
      return 'load cancelled';
    case 'recycle':
      return 'recycled: grew past its plan';
    case 'pressure':
      return 'evicted: memory pressure';
  }
}
