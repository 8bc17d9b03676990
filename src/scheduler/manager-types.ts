import type { KvCacheType, RunnerConfig } from '../engines/types.js';
import type { PressureLevel } from '../monitor/pressure.js';
import type { GpuLedgerView, LedgerView } from './core.js';
import type { LoadPolicy } from './pressure.js';
import type { StopReason } from './core-types.js';
import type { ModelEntry, ModelSource, ModelState, RunnerExit, RunnerHandle } from './types.js';

/** What the model manager takes and gives: requests, leases, status views and events. */
/** What a request asks of the model it names. */
export interface AcquireOptions {
  /** Aborts the wait (queue or load); a load other requests share goes on. */
  signal?: AbortSignal;
  /** Context size the request needs (Ollama's options.num_ctx); a loaded config at least this large is reused. */
  contextSize?: number;
  /** Idle time after this request before the model may be unloaded (Ollama's keep_alive): ms, 0 = at once, null = never. */
  keepAliveMs?: number | null;
  /** KV cache type the request needs; a loaded config with another type is reloaded. */
  kv?: KvCacheType;
  /** Parallel slots the request needs (management loads). */
  parallel?: number;
}

/** Where a request's time went before it reached the runner. */
export interface LeaseTiming {
  /** Total time from acquire() to the lease, queueing and loading included. */
  waitedMs: number;
  /** Load time when this request waited for a load, else undefined. */
  loadMs?: number;
}

export interface Lease {
  readonly model: string;
  readonly timing: LeaseTiming;
  /** Base URL of the runner serving this lease, e.g. http://127.0.0.1:40123. */
  readonly url: string;
  /** The config the runner was loaded with. */
  readonly config: RunnerConfig;
  /**
   * Aborts when headroom itself cancels this request (critical memory pressure, `cancelRequest`);
   * the holder must stop its work at the runner and end the client's answer with the reason.
   */
  readonly signal: AbortSignal;
  /** Ends the lease; idempotent. */
  release(): void;
  /**
   * Resolves true once the runner serving this lease has exited (at once when it already has),
   * false while it still runs after `timeoutMs`. For a runner that refused a connection: its
   * port closes while it exits, a moment before the exit is seen.
   */
  gone(timeoutMs: number): Promise<boolean>;
}

/** Memory of a loaded model, bytes: the ledger's view and what was measured. */
export interface ModelMemory {
  predicted: number;
  /** What the ledger holds for it. */
  allocated: number;
  /** Resident set when last measured. */
  measured?: number;
  /** Peak resident set (VmHWM). */
  peak?: number;
}

export interface ModelStatus {
  name: string;
  path: string;
  /** Where it was found (another tool's store); absent: headroom's own directories or config. */
  source?: ModelSource;
  state: ModelState;
  inFlight: number;
  /** Requests waiting in this model's queue. */
  queued: number;
  pinned: boolean;
  pid?: number;
  url?: string;
  config?: RunnerConfig;
  loadMs?: number;
  loadedAt?: number;
  lastUsedAt?: number;
  /** When the idle TTL unloads it (ms since the epoch); absent while busy, pinned or TTL never. */
  expiresAt?: number;
  /** Idle TTL in ms in effect (null: never). */
  ttlMs?: number | null;
  /** Bytes the plan predicted for the loaded config. */
  predicted?: number;
  /** Bytes measured (resident set) and the peak, once the runner has been measured. */
  measured?: number;
  peak?: number;
  /** Bytes the ledger holds for it. */
  allocated?: number;
  /** Bytes the ledger holds for it on each GPU, by device index; absent when it holds none. */
  gpuAllocated?: number[];
  drainDeadline?: number;
  backoffUntil?: number;
  lastError?: string;
  lastExit?: RunnerExit;
}

export interface ResourcesView {
  ledger: LedgerView;
  /** The ledger of each GPU (empty on a machine without GPUs and with no GPU bytes planned). */
  gpus: GpuLedgerView[];
  models: Array<{
    name: string;
    state: ModelState;
    allocated: number;
    predicted: number;
    /** Bytes the ledger holds for it on each GPU, by device index (empty: none). */
    gpus: number[];
    used?: number;
    peak?: number;
    /** Predicted split of the plan (weights, KV cache + compute, runtime). */
    buffers?: { model: number; context: number; working: number };
  }>;
}

export type ManagerEvent =
  | {
      type: 'load-start';
      model: string;
      config: RunnerConfig;
      predicted: number;
      degraded: boolean;
    }
  | { type: 'load-done'; model: string; loadMs: number; pid: number | undefined }
  | { type: 'load-failed'; model: string; error: string }
  | { type: 'runner-exit'; model: string; exit: RunnerExit; expected: boolean }
  | {
      type: 'unload';
      model: string;
      reason: string;
      /** The reason as a stable code (`ttl`, `evicted`, `pressure`, …). */
      cause: StopReason;
      /** Why this model, why now (for evictions: what needed the room). */
      detail?: string;
      /** Requests still in flight when it was stopped (forced and drain-deadline stops). */
      inFlight?: number;
      /** Bytes it held when the stop was ordered (measured resident set, else the ledger's charge). */
      bytes?: number;
      /** Evicted by memory pressure at this level. */
      level?: PressureLevel;
      /** From the stop order to the exit. */
      ms?: number;
    }
  /** The policy new loads follow changed (memory pressure, thermal throttling). */
  | { type: 'load-policy'; policy: LoadPolicy }
  /** Ready runners' prompt caches were trimmed under pressure (`unsupported`: no trimRunner). */
  | {
      type: 'trim';
      level: PressureLevel;
      reason: string;
      freedBytes: number;
      ms: number;
      outcome: 'done' | 'unsupported';
      /** Runners whose trim failed (counted as 0 bytes). */
      failures: Array<{ model: string; error: string }>;
    }
  /** A request in flight was cancelled under critical pressure. */
  | {
      type: 'request-cancelled';
      model: string;
      level: PressureLevel;
      reason: string;
      outcome: 'done' | 'failed';
      error?: string;
    }
  | {
      type: 'measured';
      model: string;
      predicted: number;
      rss: number;
      peak: number;
      charge: number;
    }
  | { type: 'note'; model: string; message: string };

/** What the shell measures of a ready runner. */
export interface MeasureResult {
  /** Bytes the ledger should hold for it from now on. */
  charge: number;
  rss: number;
  peak: number;
  /**
   * Bytes the ledger should hold on each GPU from now on. Leave it out when VRAM is not measured
   * (the embedded runner does not report it today): the plan's GPU share is kept.
   */
  gpus?: number[];
}

export interface MeasureInput {
  entry: ModelEntry;
  config: RunnerConfig;
  runner: RunnerHandle;
  predicted: number;
  loadMs: number;
  /** True for the first measurement after ready. */
  first: boolean;
  /** Requests the runner has been given since it was loaded. */
  served: number;
}
