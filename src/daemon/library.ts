import { EventEmitter } from 'node:events';
import os from 'node:os';
import type { Config } from '../config/load.js';
import type { KvCacheType, RunnerConfig } from '../engines/types.js';
import type { FeedEvent, LevelChange, MonitorFeed, MonitorSample } from '../monitor/feed.js';
import type { PressureLevel } from '../monitor/pressure.js';
import type { Alert } from '../monitor/trends.js';
import type {
  ManagerEvent,
  ModelManager,
  ModelStatus,
  ResourcesView,
} from '../scheduler/model-manager.js';
import type { StopReason } from '../scheduler/core-types.js';
import type { ModelState } from '../scheduler/types.js';

/**
 * The library's typed views over the core: memory allocations by kind, per-model metrics,
 * system resources, limits, the pressure config, and one typed event emitter. Plain data in
 * bytes and milliseconds; `null` where a figure is unknown (never measured, no limit).
 */

/** The three kinds of memory a loaded model holds, in bytes (from its plan). */
export interface MemoryBuffers {
  /** Model weights. */
  model: number;
  /** Context: the KV cache. */
  context: number;
  /** Working memory for inference: compute buffers plus the runner's runtime. */
  working: number;
}

/** What the ledger holds for one model, and what it really uses. */
export interface MemoryAllocation {
  model: string;
  state: ModelState;
  /** Bytes the ledger charges for it: its plan while loading, then the measured figure. */
  allocated: number;
  /** Bytes its plan predicted. */
  predicted: number;
  /** Resident set when last measured; null before the first measurement. */
  used: number | null;
  /** Peak resident set (VmHWM); null before the first measurement. */
  peak: number | null;
  /** The plan split by kind; null while no plan is known. */
  buffers: MemoryBuffers | null;
  /** Bytes held on each GPU, by device index (empty: none). */
  gpus: number[];
}

/** One model's numbers, for a UI or a log line. */
export interface ModelResourceMetrics {
  model: string;
  /** The file it runs from (empty for a command-engine model without one). */
  path: string;
  state: ModelState;
  /** The engine of its loaded config; null when not loaded. */
  engine: RunnerConfig['engine'] | null;
  /** Bytes resident now (measured), else the ledger's charge; null when not loaded. */
  memoryUsage: number | null;
  /** Bytes its plan predicted; null when not loaded. */
  predicted: number | null;
  peak: number | null;
  /** Last load time, ms; null when never loaded. */
  loadTimeMs: number | null;
  /** Context size of the loaded config, in tokens; null when not loaded. */
  contextSize: number | null;
  parallel: number | null;
  kvCacheType: KvCacheType | null;
  /** Last request's end (ms since the epoch); null when never used. */
  lastUsedAt: number | null;
  /** When the idle TTL unloads it (ms since the epoch); null while busy, pinned or TTL never. */
  expiresAt: number | null;
  activeRequests: number;
  queuedRequests: number;
  pinned: boolean;
  buffers: MemoryBuffers | null;
  /** The last load failure, when there was one. */
  lastError: string | null;
  /** Its conversations saved on disk (state across unloads): how many, and their bytes. */
  savedState: { entries: number; bytes: number };
}

/** The machine and the ledger together. */
export interface SystemResources {
  /** Physical RAM, bytes. */
  totalMemory: number;
  /** Memory available for new work now, bytes (the monitor's figure, else the kernel's free). */
  availableMemory: number;
  /** The models' memory budget, bytes; null: no limit. */
  budget: number | null;
  /** Bytes the ledger holds for models (reserved by loads + measured of runners). */
  allocatedMemory: number;
  /** Bytes of the budget left; null: no limit. */
  freeMemory: number | null;
  /** The largest `allocatedMemory` seen since this core started. */
  peakMemory: number;
  availableCores: number;
  /** Each GPU's ledger (empty without GPUs). */
  gpus: Array<{ index: number; budget: number | null; allocated: number; free: number | null }>;
  /** Memory pressure now; `low` and no reasons when the monitor is off. */
  pressure: { level: PressureLevel; reasons: string[]; monitor: boolean };
}

/** The limits the scheduler enforces. */
export interface ResourceLimits {
  /** Models loaded at once; null: no limit (the budget decides). */
  maxLoadedModels: number | null;
  /** Bytes models may use; null: no limit. */
  budgetBytes: number | null;
  /** Budget inputs: share of RAM, cap, reserve. */
  budget: { fraction: number; capBytes: number | null; reserveBytes: number };
  /** Idle time before an unload, ms; null: never. */
  inactivityTimeoutMs: number | null;
  queue: { maxLength: number; maxWaitMs: number };
  drainDeadlineMs: number;
  maxBodyBytes: number;
  loadTimeoutMs: number;
}

/** How the monitor samples and what pressure does. */
export interface PressureConfig {
  enabled: boolean;
  /** Sampling interval, ms. */
  intervalMs: number;
  /** Pressure reactions on (smaller loads, cache trims, evictions, refusals). */
  reactions: boolean;
  cancelOnCritical: boolean;
  /** Thresholds set in the config; levels left out follow the machine's memory-class preset. */
  thresholds: Config['monitor']['thresholds'];
  /** The level now; `low` when the monitor is off. */
  level: PressureLevel;
}

/** A model finished loading. */
export interface LoadEvent {
  model: string;
  loadMs: number;
  pid: number | undefined;
  /** The config it was planned with, and the bytes predicted (from the load-start). */
  config: RunnerConfig | undefined;
  predicted: number | undefined;
  /** The plan was shrunk to fit (smaller context, quantised KV …). */
  degraded: boolean;
}

/**
 * A model was unloaded, and why: `ttl` (idle), `evicted` (room for another model), `max-models`
 * (scheduler.maxLoadedModels), `over-budget`, `pressure` (memory pressure), `unload` / `forced`
 * (an unload call), `drain-deadline` (its requests outlasted the drain), `reload` (a request
 * needed another config), `recycle` (it grew past its plan), `load-cancelled`, `shutdown`.
 */
export interface UnloadEvent {
  model: string;
  reason: StopReason;
  /** The reason in words, as logged. */
  message: string;
  /** Why this model, why now. */
  detail?: string;
  /** Bytes it held when stopped. */
  bytes?: number;
  /** The pressure level that evicted it. */
  level?: PressureLevel;
  inFlight?: number;
}

/** Every event a `Headroom` emits, by name, with its argument. */
export interface HeadroomEventMap {
  'load-start': [{ model: string; config: RunnerConfig; predicted: number; degraded: boolean }];
  load: [LoadEvent];
  'load-failed': [{ model: string; error: string }];
  unload: [UnloadEvent];
  /** A runner exited on its own (crash, OOM kill). */
  crash: [{ model: string; code: number | null; signal: string | null }];
  /** The memory pressure level changed. */
  pressure: [LevelChange];
  /** An alert was raised or updated (leak, growth, pressure, OOM kill, heat). */
  alert: [Alert];
  /** A memory sample (every monitor interval). */
  sample: [MonitorSample];
}

/** What HeadroomEvents listens to: the model manager's events and its ledger. */
export interface EventSource {
  on(event: 'event', listener: (e: ManagerEvent) => void): unknown;
  off(event: 'event', listener: (e: ManagerEvent) => void): unknown;
  resources(): ResourcesView;
}

/** The typed event emitter of a Headroom: `hr.events.on('unload', (e) => …)`. */
export class HeadroomEvents extends EventEmitter<HeadroomEventMap> {
  readonly #detach: Array<() => void> = [];
  readonly #starts = new Map<string, HeadroomEventMap['load-start'][0]>();
  #peak = 0;

  constructor(manager: EventSource) {
    super();
    this.setMaxListeners(0);
    const onManager = (e: ManagerEvent): void => {
      this.#notePeak(manager);
      this.#fromManager(e);
    };
    manager.on('event', onManager);
    this.#detach.push(() => manager.off('event', onManager));
  }

  /** Passes on the monitor's samples, level changes and alerts (once it runs). */
  attach(feed: MonitorFeed): void {
    this.#detach.push(feed.subscribe((e) => this.#fromFeed(e)));
  }

  /** The largest ledger total seen (bytes reserved + measured), updated on every scheduler event. */
  get peakAllocated(): number {
    return this.#peak;
  }

  #notePeak(manager: EventSource): void {
    const l = manager.resources().ledger;
    this.#peak = Math.max(this.#peak, l.reserved + l.measured);
  }

  #fromManager(e: ManagerEvent): void {
    switch (e.type) {
      case 'load-start': {
        const start = {
          model: e.model,
          config: e.config,
          predicted: e.predicted,
          degraded: e.degraded,
        };
        this.#starts.set(e.model, start);
        this.emit('load-start', start);
        return;
      }
      case 'load-done': {
        const start = this.#starts.get(e.model);
        this.#starts.delete(e.model);
        this.emit('load', {
          model: e.model,
          loadMs: e.loadMs,
          pid: e.pid,
          config: start?.config,
          predicted: start?.predicted,
          degraded: start?.degraded ?? false,
        });
        return;
      }
      case 'load-failed':
        this.#starts.delete(e.model);
        this.emit('load-failed', { model: e.model, error: e.error });
        return;
      case 'unload': {
        const { type: _t, reason, cause, ...rest } = e;
        this.emit('unload', { ...rest, reason: cause, message: reason });
        return;
      }
      case 'runner-exit':
        if (!e.expected)
          this.emit('crash', { model: e.model, code: e.exit.code, signal: e.exit.signal });
        return;
      default:
        return;
    }
  }

  #fromFeed(e: FeedEvent): void {
    if (e.type === 'sample') this.emit('sample', e.sample);
    else if (e.type === 'level-change') this.emit('pressure', e.change);
    else if (e.type === 'alert') this.emit('alert', e.alert);
  }

  /** Detaches from the scheduler and the monitor. Idempotent. */
  dispose(): void {
    for (const d of this.#detach.splice(0)) d();
    this.removeAllListeners();
  }
}

const finite = (n: number): number | null => (Number.isFinite(n) ? n : null);

type Manager = Pick<ModelManager, 'list' | 'resources'>;

/** Each model's ledger charge, use and plan split (models not loaded are left out). */
export function memoryAllocations(manager: Manager): MemoryAllocation[] {
  return manager.resources().models.map((m) => ({
    model: m.name,
    state: m.state,
    allocated: m.allocated,
    predicted: m.predicted,
    used: m.used ?? null,
    peak: m.peak ?? null,
    buffers: m.buffers ?? null,
    gpus: m.gpus,
  }));
}

/** Every known model's numbers, loaded or not. */
export function modelMetrics(
  manager: Manager,
  savedState: (model: string) => { entries: number; bytes: number },
): ModelResourceMetrics[] {
  const buffers = new Map(manager.resources().models.map((m) => [m.name, m.buffers ?? null]));
  return manager.list().map((s: ModelStatus) => {
    const loaded = s.state !== 'unloaded' && s.state !== 'failed';
    return {
      model: s.name,
      path: s.path,
      state: s.state,
      engine: loaded ? (s.config?.engine ?? null) : null,
      memoryUsage: loaded ? (s.measured ?? s.allocated ?? null) : null,
      predicted: loaded ? (s.predicted ?? null) : null,
      peak: s.peak ?? null,
      loadTimeMs: s.loadMs ?? null,
      contextSize: loaded ? (s.config?.contextSize ?? null) : null,
      parallel: loaded ? (s.config?.parallel ?? null) : null,
      kvCacheType: loaded ? (s.config?.kvCacheKeyType ?? null) : null,
      lastUsedAt: s.lastUsedAt ?? null,
      expiresAt: s.expiresAt ?? null,
      activeRequests: s.inFlight,
      queuedRequests: s.queued,
      pinned: s.pinned,
      buffers: buffers.get(s.name) ?? null,
      lastError: s.lastError ?? null,
      savedState: savedState(s.name),
    };
  });
}

/** The machine (RAM, cores, pressure) and the ledger (budget, allocated, free). */
export function systemResources(
  manager: Manager,
  feed: MonitorFeed | undefined,
  peakAllocated: number,
): SystemResources {
  const r = manager.resources();
  const sample = feed?.latest();
  const allocated = r.ledger.reserved + r.ledger.measured;
  return {
    totalMemory: sample?.memory.total ?? os.totalmem(),
    availableMemory: sample?.pressure.available ?? os.freemem(),
    budget: finite(r.ledger.budget),
    allocatedMemory: allocated,
    freeMemory: finite(r.ledger.free),
    peakMemory: Math.max(peakAllocated, allocated),
    availableCores: os.availableParallelism(),
    gpus: r.gpus.map((g) => ({
      index: g.index,
      budget: finite(g.budget),
      allocated: g.reserved + g.measured,
      free: finite(g.free),
    })),
    pressure: {
      level: feed?.level() ?? 'low',
      reasons: sample?.pressure.reasons ?? [],
      monitor: feed !== undefined,
    },
  };
}

/** The scheduler's limits from the config, and the budget in force. */
export function resourceLimits(config: Config, manager: Manager): ResourceLimits {
  const s = config.scheduler;
  return {
    maxLoadedModels: finite(s.maxLoadedModels),
    budgetBytes: finite(manager.resources().ledger.budget),
    budget: {
      fraction: s.budget.fraction,
      capBytes: s.budget.capBytes ?? null,
      reserveBytes: s.budget.reserveBytes,
    },
    inactivityTimeoutMs: finite(s.ttlMs),
    queue: { ...s.queue },
    drainDeadlineMs: s.drainDeadlineMs,
    maxBodyBytes: config.limits.maxBodyBytes,
    loadTimeoutMs: config.limits.loadTimeoutMs,
  };
}

/** The monitor's settings and the level now. */
export function pressureConfig(config: Config, feed: MonitorFeed | undefined): PressureConfig {
  const m = config.monitor;
  return {
    enabled: m.enabled,
    intervalMs: m.interval,
    reactions: m.reactions,
    cancelOnCritical: m.cancelOnCritical,
    thresholds: m.thresholds,
    level: feed?.level() ?? 'low',
  };
}
