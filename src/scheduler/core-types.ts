import type { KvCacheType, RunnerConfig } from '../engines/types.js';
import type { PressureLevel } from '../monitor/pressure.js';
import type { LoadPolicy } from './pressure.js';
import type { RecycleSettings } from './recycle.js';

/**
 * The types of the scheduler core's surface (core.ts): what it takes (settings, plans, policies,
 * requests), what it orders through its effects, and its read-only views.
 */

/** What a request asks of the config it runs on. */
export interface Needs {
  /** Context per slot in tokens; a loaded config at least this large is reused. */
  contextSize?: number;
  /** KV cache type; when given, a loaded config must have it. */
  kv?: KvCacheType;
  /** Parallel slots; a loaded config with at least this many is reused. */
  parallel?: number;
}

export interface PlanFits {
  fits: true;
  config: RunnerConfig;
  /** Bytes the load reserves in the ledger (the plan's predicted peak). */
  bytes: number;
  /** True when the plan had to give up part of the request (smaller context, quantised KV). */
  degraded?: boolean;
  /**
   * Bytes the load takes on each GPU, by device index (the footprint's `byDevice.gpus`: index 0 is
   * what is offloaded to GPU 0). Missing or empty: nothing on a GPU. `bytes` stays the planner's
   * RAM figure (today its total, offloaded weights included); each device is charged on its own.
   */
  gpuBytes?: number[];
}

export interface PlanRefused {
  fits: false;
  /** One sentence: why nothing fits. */
  message: string;
  /** What a person can do about it (the preflight's guidance). */
  guidance: string[];
}

export type PlanOutcome = PlanFits | PlanRefused;

/**
 * Plans a load of `model` for `needs` within `roomBytes` of RAM and `roomGpuBytes[g]` on each GPU
 * that has a budget (empty when none has: a GPU without a budget does not limit). Pure and
 * synchronous (the shell reads the GGUF header before it submits a request). May degrade within
 * the optimisation level. A plan whose GPU bytes exceed the GPU room is not loaded: the core
 * checks every device itself.
 */
export type PlanFn = (
  model: string,
  needs: Needs,
  roomBytes: number,
  roomGpuBytes: readonly number[],
) => PlanOutcome;

export interface ModelPolicy {
  /** Never evicted for room, never unloaded by TTL (an explicit unload still works). */
  pinned: boolean;
  /** Idle time before an unload, in ms; Infinity = never, 0 = as soon as it is idle. */
  ttlMs: number;
}

export interface CoreSettings {
  /** Bytes the ledger may hold (see `computeBudget`). */
  budgetBytes: number;
  /**
   * Bytes the ledger may hold on each GPU, by device index (see `computeGpuBudget`). Defaults to
   * none: a GPU without a budget does not limit (a machine without GPUs behaves as RAM-only).
   */
  gpuBudgetBytes?: readonly number[];
  /** Models loaded (loading, ready or draining) at once. Infinity = no limit. */
  maxLoadedModels: number;
  /** Requests queued per model; one more is refused with 429. */
  maxQueue: number;
  /** Longest a request may wait in a queue before it is refused with 429. Infinity = no limit. */
  maxWaitMs: number;
  /** How long a draining model with requests in flight is given before it is stopped anyway. */
  drainDeadlineMs: number;
  /** Back-off after repeated failures: base × 2^(failures − 2), capped at max. */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Restarting runners that grew past their plan (see RecycleSettings). Defaults to never. */
  recycle?: RecycleSettings;
}

export type RejectKind =
  | 'queue_full'
  | 'queue_timeout'
  | 'load_failed'
  | 'backoff'
  | 'no_fit'
  | 'cancelled'
  | 'shutting_down'
  /** New loads are refused while memory pressure is critical; not a load failure (no back-off). */
  | 'pressure';

export interface Rejection {
  kind: RejectKind;
  model: string;
  message: string;
  /** Seconds after which a retry may succeed (429/503 Retry-After). */
  retryAfterSeconds?: number;
  guidance?: string[];
}

export type StopReason =
  | 'ttl'
  | 'evicted'
  | 'max-models'
  | 'over-budget'
  | 'unload'
  | 'forced'
  | 'drain-deadline'
  | 'reload'
  | 'shutdown'
  | 'load-cancelled'
  | 'recycle'
  | 'pressure';

export interface StopOrder {
  instance: number;
  model: string;
  reason: StopReason;
  /** A sentence for the log: why this model, why now. */
  detail: string;
  /** Requests still in flight on it (non-zero only for forced and drain-deadline stops). */
  inFlight: number;
  /** Bytes it holds: measured resident set when known, else its ledger charge. */
  bytes: number;
  /** The pressure level that evicted it (reason `pressure` only). */
  level?: PressureLevel;
}

/** Trim the prompt caches of these ready runners (idle or busy: a trim never disturbs a request). */
export interface TrimOrder {
  level: PressureLevel;
  reason: string;
  runners: Array<{ instance: number; model: string }>;
}

/** Cancel a granted request: its holder stops the work and answers 503. It is still released as usual. */
export interface CancelOrder {
  request: number;
  instance: number;
  model: string;
  level: PressureLevel;
  reason: string;
}

export interface LoadOrder {
  instance: number;
  model: string;
  config: RunnerConfig;
  bytes: number;
  /** Bytes reserved on each GPU, by device index (empty: none). */
  gpuBytes: number[];
  degraded: boolean;
}

export interface CoreEffects {
  startLoad(order: LoadOrder): void;
  /** The request may use the instance (a lease). */
  grant(request: number, instance: number): void;
  reject(request: number, rejection: Rejection): void;
  /** Stop the instance's runner; report its exit with `exited()`. A loading one: abort the load. */
  stop(order: StopOrder): void;
  /** Trim runners' prompt caches (medium pressure and up, once per rise in level). */
  trim?(order: TrimOrder): void;
  /** Cancel a request in flight (critical pressure with `cancelOnCritical`). */
  cancelRequest?(order: CancelOrder): void;
  /** Decisions worth a log line (evictions and their reasons, waits for room, load policy). */
  note?(event: CoreNote): void;
}

export type CoreNote =
  | { type: 'waiting-for-room'; model: string; needBytes: number; freeBytes: number }
  | { type: 'degraded'; model: string; bytes: number; contextSize: number }
  | { type: 'backoff'; model: string; untilMs: number; failures: number }
  | { type: 'drain'; model: string; instance: number; inFlight: number; deadline: number }
  /** The policy new loads follow changed (memory pressure, thermal throttling). */
  | { type: 'load-policy'; policy: LoadPolicy };

export type InstanceState = 'loading' | 'ready' | 'draining' | 'stopping';

export interface SubmitOptions {
  /** Idle time after this request before unload (Ollama keep_alive): ms; 0 = at once; null = never. */
  keepAliveMs?: number | null;
}

/** A read-only view of one model, for status and /admin/resources. */
export interface ModelView {
  name: string;
  queued: number;
  failures: number;
  backoffUntil?: number;
  lastError?: string;
  lastLoadMs?: number;
  waitingForRoom: boolean;
  instance?: InstanceView;
}

export interface InstanceView {
  id: number;
  state: InstanceState;
  config: RunnerConfig;
  /** Bytes the plan predicted. */
  predicted: number;
  /** Bytes the ledger holds for it now. */
  charge: number;
  measured?: number;
  peak?: number;
  /** Bytes the plan predicted on each GPU, by device index (empty: none). */
  gpuPredicted: number[];
  /** Bytes the ledger holds for it on each GPU (the plan's until a VRAM measurement replaces it). */
  gpuCharge: number[];
  inFlight: number;
  /** Requests granted to it since it was loaded. */
  served: number;
  loadStartedAt: number;
  readyAt?: number;
  lastUsedAt: number;
  /** When the idle TTL unloads it; undefined while busy, loading, pinned or with TTL never. */
  expiresAt?: number;
  ttlMs: number;
  drainDeadline?: number;
  stopReason?: StopReason;
}

export interface LedgerView {
  budget: number;
  /** Bytes held by loads in progress (their plans). */
  reserved: number;
  /** Bytes held by running runners (their measured footprint, or the plan until measured). */
  measured: number;
  free: number;
}

/** The ledger of one GPU. `budget` and `free` are Infinity for a GPU without a budget. */
export interface GpuLedgerView extends LedgerView {
  index: number;
}

export interface CoreOptions {
  settings: CoreSettings;
  effects: CoreEffects;
  plan: PlanFn;
  policy: (model: string) => ModelPolicy;
  now: () => number;
}
