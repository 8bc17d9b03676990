import { EventEmitter } from 'node:events';
import type { RunnerConfig } from '../engines/types.js';
import { raceAbort, throwIfAborted } from '../lib/abort.js';
import { HeadroomError, describeError } from '../lib/errors.js';
import type { ModelEntry, ModelState, RunnerExit, RunnerHandle, StartRunner } from './types.js';

/**
 * Owns which models are loaded and who is using them: on-demand, single-flight loads, leases
 * for requests in flight, drain before stop, and crash detection.
 *
 * Contract: `acquire()` resolves with a lease on a ready runner or rejects with a HeadroomError
 * (or the signal's reason); every lease must be released exactly once (release is idempotent).
 * A load is shared by every request waiting for it: a waiter that leaves does not cancel it;
 * a failed load fails every waiter with its reason, and the next request tries again.
 */

export class ModelNotFoundError extends HeadroomError {
  override readonly name = 'ModelNotFoundError';
  constructor(name: string, known: readonly string[]) {
    super(
      'model_not_found',
      `The model "${name}" does not exist. Known models: ${known.length > 0 ? known.join(', ') : '(none: add a models directory)'}.`,
      { status: 404, details: { param: 'model', known } },
    );
  }
}

export class ModelLoadError extends HeadroomError {
  override readonly name = 'ModelLoadError';
  constructor(name: string, cause: unknown) {
    super('model_load_failed', `Loading the model "${name}" failed: ${describeError(cause)}`, {
      status: 503,
      cause,
    });
  }
}

export class ModelUnavailableError extends HeadroomError {
  override readonly name = 'ModelUnavailableError';
  constructor(name: string, state: ModelState) {
    super(
      'model_unavailable',
      `The model "${name}" is ${state} and takes no new requests; retry shortly.`,
      {
        status: 503,
        details: { retryAfterSeconds: 1 },
      },
    );
  }
}

/** What a request asks of the model it names. */
export interface AcquireOptions {
  /** Aborts the wait (queue or load); a load other requests share goes on. */
  signal?: AbortSignal;
  /** Context size the request needs (Ollama's options.num_ctx); a loaded config at least this large is reused. */
  contextSize?: number;
  /** Idle time after this request before the model may be unloaded (Ollama's keep_alive): ms, 0 = at once, null = never. */
  keepAliveMs?: number | null;
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
  /** Ends the lease; idempotent. */
  release(): void;
}

export interface ModelStatus {
  name: string;
  path: string;
  state: ModelState;
  inFlight: number;
  pid?: number;
  url?: string;
  config?: RunnerConfig;
  loadMs?: number;
  loadedAt?: number;
  lastUsedAt?: number;
  lastError?: string;
  lastExit?: RunnerExit;
}

export type ManagerEvent =
  | { type: 'load-start'; model: string; config: RunnerConfig }
  | { type: 'load-done'; model: string; loadMs: number; pid: number | undefined }
  | { type: 'load-failed'; model: string; error: string }
  | { type: 'runner-exit'; model: string; exit: RunnerExit; expected: boolean }
  | { type: 'unload'; model: string; reason: string };

export interface ModelManagerOptions {
  /** The models known now (read on every lookup, so a catalog refresh is seen at once). */
  catalog: () => ReadonlyMap<string, ModelEntry>;
  startRunner: StartRunner;
  /** Runner settings for a model before its overrides. */
  defaults: Omit<RunnerConfig, 'modelPath'>;
  /** SIGTERM-to-SIGKILL grace when stopping a runner. */
  stopGraceMs: number;
  now?: () => number;
}

interface Slot {
  entry: ModelEntry;
  state: ModelState;
  inFlight: number;
  config?: RunnerConfig;
  runner?: RunnerHandle;
  /** The shared load, while state is 'loading'. */
  loading?: Promise<RunnerHandle>;
  /** Resolves when the slot's in-flight count reaches zero (while draining). */
  idleWaiters: Array<() => void>;
  /** The stop in progress, while state is 'stopping'. */
  stopping?: Promise<void>;
  loadedAt?: number;
  lastUsedAt?: number;
  lastError?: string;
  lastExit?: RunnerExit;
  unsubscribeExit?: () => void;
}

export class ModelManager extends EventEmitter<{ event: [ManagerEvent] }> {
  readonly #opts: ModelManagerOptions;
  readonly #slots = new Map<string, Slot>();
  readonly #now: () => number;
  #disposing: Promise<void> | undefined;

  constructor(opts: ModelManagerOptions) {
    super();
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** Names of the models in the catalog, sorted. */
  names(): string[] {
    return [...this.#opts.catalog().keys()].sort();
  }

  /** The runner config a model is loaded with by default. */
  configFor(entry: ModelEntry): RunnerConfig {
    return { ...this.#opts.defaults, ...entry.overrides, modelPath: entry.path };
  }

  /**
   * A lease on a ready runner of `name`, loading it first when needed.
   * Rejects with ModelNotFoundError, ModelLoadError, ModelUnavailableError or the signal's reason.
   */
  async acquire(name: string, opts: AcquireOptions = {}): Promise<Lease> {
    const { signal } = opts;
    const started = this.#now();
    let loadMs: number | undefined;
    for (;;) {
      throwIfAborted(signal);
      if (this.#disposing) throw new ModelUnavailableError(name, 'stopping');
      const slot = this.#slot(name);
      switch (slot.state) {
        case 'ready':
          return this.#lease(slot, { waitedMs: this.#now() - started, loadMs });
        case 'loading': {
          const runner = await raceAbort(slot.loading!, signal);
          loadMs = runner.loadMs;
          continue;
        }
        case 'draining':
        case 'stopping':
          throw new ModelUnavailableError(name, slot.state);
        case 'unloaded':
        case 'failed':
          this.#startLoad(slot);
          continue;
      }
    }
  }

  /** Loads a model without taking a lease (management API, preload). */
  async load(name: string, signal?: AbortSignal): Promise<ModelStatus> {
    const lease = await this.acquire(name, { signal });
    lease.release();
    return this.status(name);
  }

  /**
   * Stops a model's runner. Without `force` it drains first: no new requests are routed to it
   * and it stops when its last request ends. With `force` it stops at once.
   */
  async unload(
    name: string,
    opts: { force?: boolean; reason?: string } = {},
  ): Promise<ModelStatus> {
    const slot = this.#slot(name);
    if (slot.state === 'loading') {
      await slot.loading!.catch(() => undefined);
    }
    if (slot.state === 'stopping') {
      await slot.stopping;
      return this.status(name);
    }
    if (slot.state !== 'ready' && slot.state !== 'draining') return this.status(name);
    slot.state = 'draining';
    if (slot.inFlight > 0 && !opts.force) {
      await new Promise<void>((resolve) => slot.idleWaiters.push(resolve));
    }
    await this.#stop(slot, opts.reason ?? (opts.force ? 'forced unload' : 'unload'));
    return this.status(name);
  }

  status(name: string): ModelStatus {
    const slot = this.#slot(name);
    return this.#statusOf(slot);
  }

  list(): ModelStatus[] {
    return this.names().map((n) => this.status(n));
  }

  /** Stops every runner (draining is the server's job: it stops accepting first). Idempotent. */
  dispose(): Promise<void> {
    this.#disposing ??= (async () => {
      const slots = [...this.#slots.values()];
      await Promise.all(
        slots.map(async (slot) => {
          if (slot.state === 'loading') await slot.loading!.catch(() => undefined);
          if (slot.state === 'stopping') return slot.stopping;
          if (slot.state === 'ready' || slot.state === 'draining')
            return this.#stop(slot, 'shutdown');
        }),
      );
    })();
    return this.#disposing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  #slot(name: string): Slot {
    const catalog = this.#opts.catalog();
    const entry = catalog.get(name);
    let slot = this.#slots.get(name);
    if (!entry) {
      // A model removed from the catalog keeps its slot while it still has a runner.
      if (slot && slot.state !== 'unloaded' && slot.state !== 'failed') return slot;
      throw new ModelNotFoundError(name, [...catalog.keys()].sort());
    }
    if (!slot) {
      slot = { entry, state: 'unloaded', inFlight: 0, idleWaiters: [] };
      this.#slots.set(name, slot);
    } else if (slot.state === 'unloaded' || slot.state === 'failed') {
      slot.entry = entry;
    }
    return slot;
  }

  #lease(slot: Slot, timing: LeaseTiming): Lease {
    slot.inFlight++;
    slot.lastUsedAt = this.#now();
    const url = slot.runner!.url;
    let released = false;
    return {
      model: slot.entry.name,
      url,
      timing,
      release: () => {
        if (released) return;
        released = true;
        slot.inFlight--;
        slot.lastUsedAt = this.#now();
        if (slot.inFlight === 0) {
          const waiters = slot.idleWaiters.splice(0);
          for (const w of waiters) w();
        }
      },
    };
  }

  #startLoad(slot: Slot): void {
    const config = this.configFor(slot.entry);
    slot.state = 'loading';
    slot.config = config;
    slot.lastError = undefined;
    const name = slot.entry.name;
    this.emit('event', { type: 'load-start', model: name, config });
    // The load belongs to the model, not to the request that triggered it: it gets its own signal.
    const controller = new AbortController();
    slot.loading = this.#opts.startRunner(slot.entry, config, controller.signal).then(
      (runner) => {
        slot.runner = runner;
        slot.state = 'ready';
        slot.loadedAt = this.#now();
        slot.loading = undefined;
        slot.unsubscribeExit = runner.onExit((exit) => this.#onRunnerExit(slot, runner, exit));
        this.emit('event', {
          type: 'load-done',
          model: name,
          loadMs: runner.loadMs ?? 0,
          pid: runner.pid,
        });
        return runner;
      },
      (err: unknown) => {
        slot.state = 'failed';
        slot.loading = undefined;
        slot.lastError = describeError(err);
        this.emit('event', { type: 'load-failed', model: name, error: slot.lastError });
        throw err instanceof HeadroomError && err.status < 500
          ? err
          : new ModelLoadError(name, err);
      },
    );
    // Waiters observe the promise; this keeps an unobserved rejection from being reported.
    slot.loading.catch(() => undefined);
  }

  #onRunnerExit(slot: Slot, runner: RunnerHandle, exit: RunnerExit): void {
    if (slot.runner !== runner) return;
    const expected = slot.state === 'stopping';
    slot.lastExit = exit;
    this.emit('event', { type: 'runner-exit', model: slot.entry.name, exit, expected });
    if (expected) return; // #stop finishes the bookkeeping.
    slot.unsubscribeExit?.();
    slot.unsubscribeExit = undefined;
    slot.runner = undefined;
    slot.state = 'failed';
    slot.lastError = `runner exited unexpectedly (code ${exit.code ?? '-'}, signal ${exit.signal ?? '-'})`;
    // Requests in flight see their upstream connection break; their leases are released by them.
    const waiters = slot.idleWaiters.splice(0);
    for (const w of waiters) w();
  }

  #stop(slot: Slot, reason: string): Promise<void> {
    const runner = slot.runner;
    slot.state = 'stopping';
    slot.stopping = (async () => {
      try {
        await runner?.stop({ graceMs: this.#opts.stopGraceMs });
      } finally {
        slot.unsubscribeExit?.();
        slot.unsubscribeExit = undefined;
        slot.runner = undefined;
        slot.state = 'unloaded';
        slot.stopping = undefined;
        this.emit('event', { type: 'unload', model: slot.entry.name, reason });
      }
    })();
    return slot.stopping;
  }

  #statusOf(slot: Slot): ModelStatus {
    const s: ModelStatus = {
      name: slot.entry.name,
      path: slot.entry.path,
      state: slot.state,
      inFlight: slot.inFlight,
    };
    if (slot.runner) {
      s.pid = slot.runner.pid;
      s.url = slot.runner.url;
      s.loadMs = slot.runner.loadMs;
    }
    if (slot.config && slot.state !== 'unloaded') s.config = slot.config;
    if (slot.loadedAt !== undefined && slot.runner) s.loadedAt = slot.loadedAt;
    if (slot.lastUsedAt !== undefined) s.lastUsedAt = slot.lastUsedAt;
    if (slot.lastError !== undefined) s.lastError = slot.lastError;
    if (slot.lastExit !== undefined) s.lastExit = slot.lastExit;
    return s;
  }
}
