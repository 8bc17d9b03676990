import type { RunnerConfig } from '../engines/types.js';
import type { PressureLevel } from '../monitor/pressure.js';
import type {
  CoreEffects,
  CoreOptions,
  CoreSettings,
  GpuLedgerView,
  InstanceState,
  LedgerView,
  ModelPolicy,
  ModelView,
  Needs,
  PlanFits,
  PlanFn,
  PlanOutcome,
  PlanRefused,
  StopReason,
  SubmitOptions,
} from './core-types.js';
import {
  chooseVictims,
  pressureVictims,
  victimCandidates,
  type VictimCandidate,
} from './eviction.js';
import { addGpus, cleanGpuBytes, deviceLedger, deviceTotal, mib, zeros } from './ledger.js';
import {
  adjustLoad,
  levelRank,
  loadPolicyFor,
  NORMAL_LOAD_POLICY,
  samePolicy,
  why,
  type LoadPolicy,
  type PressureReport,
} from './pressure.js';
import { recycleReason } from './recycle.js';

/**
 * The scheduler's decision core: pure and synchronous. It holds the ledger, the per-model queues
 * and the state of every runner instance, and decides who is granted, who waits, who is refused,
 * what is loaded and what is stopped. It performs no I/O: every decision goes out through the
 * injected `CoreEffects`, and every fact comes in through a method call (`request`, `release`,
 * `loadSucceeded`, `exited`, `tick`, …). Time comes from the injected clock.
 *
 * Contract for the shell (model-manager.ts): effects are called synchronously from inside a core
 * method and must not call back into the core synchronously (they start async work and report
 * its outcome later through another core method). The core throws on re-entry: it is a bug.
 *
 * DESIGN.md in this folder has the states, the invariants and the reasons for them. The parts
 * that are plain functions live beside it: core-types.ts (its surface), ledger.ts (one ledger
 * per device), eviction.ts (candidates, reload cost, victim choice), budget.ts, recycle.ts and
 * pressure.ts (the load policy).
 */

export * from './core-types.js';
export { computeBudget, computeGpuBudget } from './budget.js';
export { chooseVictims, type VictimCandidate } from './eviction.js';
export type { RecycleSettings } from './recycle.js';
export type { LoadPolicy, PressureReport } from './pressure.js';

interface Instance {
  id: number;
  model: string;
  config: RunnerConfig;
  state: InstanceState;
  predicted: number;
  charge: number;
  measured?: number;
  peak?: number;
  gpuPredicted: number[];
  /** Bytes held on each GPU: the plan's, replaced only by a measurement that names the GPU. */
  gpuCharge: number[];
  /** Largest context a request planned onto this instance asked for (a degraded plan serves it). */
  plannedContext: number;
  inFlight: Set<number>;
  loadStartedAt: number;
  readyAt?: number;
  lastUsedAt: number;
  /** TTL set by the last request's keep_alive; undefined = the model's policy. */
  keepAliveMs?: number | null;
  drainDeadline?: number;
  stopReason?: StopReason;
  /** An unload asked for while it was loading: drain as soon as it is ready. */
  unloadWhenReady?: boolean;
  /** Requests granted to it since it was loaded. */
  served: number;
}

interface Req {
  id: number;
  model: string;
  needs: Needs;
  keepAliveMs?: number | null;
  enqueuedAt: number;
  seq: number;
  instance?: number;
  /** Order of its grant among all grants (the newest is cancelled first under pressure). */
  grantSeq?: number;
}

interface ModelRec {
  name: string;
  queue: Req[];
  instance?: Instance;
  failures: number;
  backoffUntil: number;
  lastError?: string;
  lastLoadMs?: number;
  lastBytes?: number;
  /** Why its queue head waits for room on a GPU (for a queue timeout's message); undefined otherwise. */
  gpuWait?: string;
}

/** Whether a loaded config serves a request's needs (never reload for a smaller context). */
export function compatible(config: RunnerConfig, plannedContext: number, needs: Needs): boolean {
  if (needs.kv !== undefined && config.kvCacheKeyType !== needs.kv) return false;
  if (needs.parallel !== undefined && config.parallel < needs.parallel) return false;
  if (needs.contextSize !== undefined) {
    // A degraded plan was the best that fitted for that context: reuse it rather than thrash.
    const ctx = Math.max(config.contextSize, plannedContext);
    if (ctx < needs.contextSize) return false;
  }
  return true;
}

export class SchedulerCore {
  #s: CoreSettings;
  /** Budget per GPU, by device index; a GPU past the end has none (does not limit). */
  #gpuBudgets: number[];
  readonly #fx: CoreEffects;
  readonly #plan: PlanFn;
  readonly #policy: (model: string) => ModelPolicy;
  readonly #now: () => number;
  readonly #models = new Map<string, ModelRec>();
  readonly #requests = new Map<number, Req>();
  readonly #instances = new Map<number, Instance>();
  #nextInstance = 1;
  #seq = 0;
  #closed = false;
  #busy = false;
  /** The one model allowed to evict for room at a time (the oldest queue head that needs room). */
  #awaitingRoom: string | undefined;
  /** The policy new loads follow (set by `pressure()`). */
  #loadPolicy: LoadPolicy = NORMAL_LOAD_POLICY;
  /** The level prompt caches were last trimmed at; undefined once pressure is back to low. */
  #trimmedAt: PressureLevel | undefined;
  /** When the last runner left the ledger: a pressure reading taken before then is stale. */
  #lastExitAt = Number.NEGATIVE_INFINITY;
  /** Requests cancelled under pressure and not yet released (one at a time). */
  readonly #cancelled = new Set<number>();
  #grantSeq = 0;

  constructor(opts: CoreOptions) {
    this.#s = { ...opts.settings };
    this.#gpuBudgets = cleanGpuBytes(opts.settings.gpuBudgetBytes ?? []);
    this.#s.gpuBudgetBytes = this.#gpuBudgets;
    this.#fx = opts.effects;
    this.#plan = opts.plan;
    this.#policy = opts.policy;
    this.#now = opts.now;
  }

  // ---- inputs -------------------------------------------------------------------------------

  /** A request for `model`: answered later by exactly one `grant` or `reject` effect. */
  request(id: number, model: string, needs: Needs = {}, opts: SubmitOptions = {}): void {
    this.#run(() => {
      if (this.#requests.has(id)) throw new Error(`request ${id} submitted twice`);
      const rec = this.#model(model);
      if (this.#closed) {
        this.#fx.reject(id, {
          kind: 'shutting_down',
          model,
          message: 'headroom is shutting down and takes no new requests.',
          retryAfterSeconds: 1,
        });
        return;
      }
      if (rec.queue.length >= this.#s.maxQueue) {
        this.#fx.reject(id, {
          kind: 'queue_full',
          model,
          message: `The queue for "${model}" is full (${this.#s.maxQueue} waiting); retry later.`,
          retryAfterSeconds: this.#retryAfter(rec),
        });
        return;
      }
      const req: Req = { id, model, needs, enqueuedAt: this.#now(), seq: this.#seq++ };
      if (opts.keepAliveMs !== undefined) req.keepAliveMs = opts.keepAliveMs;
      this.#requests.set(id, req);
      rec.queue.push(req);
    });
  }

  /**
   * The client of a request went away. A queued request is removed and answered with a
   * `cancelled` rejection; it never starts a load. A granted one is untouched (release it).
   */
  cancel(id: number): void {
    this.#run(() => {
      const req = this.#requests.get(id);
      if (!req || req.instance !== undefined) return;
      this.#dequeue(req);
      this.#fx.reject(id, {
        kind: 'cancelled',
        model: req.model,
        message: 'The request was cancelled while it waited.',
      });
    });
  }

  /** A granted request ended. Idempotent; unknown ids are ignored. */
  release(id: number): void {
    this.#run(() => {
      const req = this.#requests.get(id);
      if (!req || req.instance === undefined) return;
      this.#requests.delete(id);
      this.#cancelled.delete(id);
      const inst = this.#instances.get(req.instance);
      if (!inst) return; // it crashed or was force-stopped under the request
      inst.inFlight.delete(id);
      inst.lastUsedAt = this.#now();
      const rec = this.#models.get(inst.model)!;
      rec.failures = 0; // it served a request: no longer "keeps crashing"
      if (inst.state === 'draining' && inst.inFlight.size === 0) {
        this.#stop(inst, inst.stopReason ?? 'unload', 'drained: its last request ended');
      }
    });
  }

  loadSucceeded(instance: number, info: { loadMs: number }): void {
    this.#run(() => {
      const inst = this.#instances.get(instance);
      if (!inst || inst.state !== 'loading') return;
      inst.state = 'ready';
      inst.readyAt = this.#now();
      inst.lastUsedAt = inst.readyAt;
      const rec = this.#models.get(inst.model)!;
      rec.lastLoadMs = info.loadMs;
      rec.lastError = undefined;
      if (inst.unloadWhenReady) this.#drainOrStop(inst, 'unload', 'unloaded while it was loading');
    });
  }

  /** A load failed: the reservation is released and every waiter of the model fails with the reason. */
  loadFailed(instance: number, message: string): void {
    this.#run(() => {
      const inst = this.#instances.get(instance);
      if (!inst || inst.state === 'ready' || inst.state === 'draining') return;
      const aborted = inst.state === 'stopping';
      this.#remove(inst);
      const rec = this.#models.get(inst.model)!;
      if (aborted) return; // we stopped it on purpose (unload or shutdown during the load)
      this.#failure(rec, message);
      for (const req of rec.queue.splice(0)) {
        this.#requests.delete(req.id);
        this.#fx.reject(req.id, {
          kind: 'load_failed',
          model: rec.name,
          message: `Loading the model "${rec.name}" failed: ${message}`,
          retryAfterSeconds: this.#retryAfter(rec),
        });
      }
    });
  }

  /** A runner's process exited. Expected after a stop order; otherwise a crash. */
  exited(instance: number, info: { message?: string } = {}): void {
    this.#run(() => {
      const inst = this.#instances.get(instance);
      if (!inst) return;
      const rec = this.#models.get(inst.model)!;
      const crashed = inst.state !== 'stopping';
      this.#remove(inst);
      if (crashed) this.#failure(rec, info.message ?? 'the runner exited unexpectedly');
    });
  }

  /**
   * What a ready runner measures. `charge` is the ledger's figure for it from now on (the shell
   * applies the planner's rule: the measured peak replaces the plan once the context was full,
   * else it can only raise it). `gpus`, when given, is the same figure per GPU; without it the
   * GPU charge stays as planned (the runner does not report VRAM today, so in practice the GPU
   * share is always the plan's). If that pushes the ledger past a budget, idle models go.
   */
  measured(
    instance: number,
    m: { charge: number; rss?: number; peak?: number; gpus?: readonly number[] },
  ): void {
    this.#run(() => {
      const inst = this.#instances.get(instance);
      if (!inst || inst.state === 'loading') return;
      inst.charge = Math.max(0, m.charge);
      if (m.gpus !== undefined) inst.gpuCharge = cleanGpuBytes(m.gpus);
      if (m.rss !== undefined) inst.measured = m.rss;
      if (m.peak !== undefined) inst.peak = Math.max(inst.peak ?? 0, m.peak);
      this.#recycleIfGrown(inst);
      this.#relieveOverBudget();
    });
  }

  /** See RecycleSettings. */
  #recycleIfGrown(inst: Instance): void {
    const detail = recycleReason(inst, this.#s.recycle);
    if (detail !== undefined) this.#drainOrStop(inst, 'recycle', detail);
  }

  /** Time passed: TTLs, queue wait bounds, drain deadlines, back-off ends. */
  tick(): void {
    this.#run(() => {
      const now = this.#now();
      for (const rec of this.#models.values()) {
        for (const req of [...rec.queue]) {
          if (now - req.enqueuedAt >= this.#s.maxWaitMs) {
            const gpuWait = rec.gpuWait; // read before the dequeue that may clear it
            this.#dequeue(req);
            this.#fx.reject(req.id, {
              kind: 'queue_timeout',
              model: rec.name,
              message: `The request waited ${Math.round(this.#s.maxWaitMs / 1000)} s for "${rec.name}" without being served${gpuWait !== undefined ? ` (waiting for GPU memory: ${gpuWait})` : ''}; retry later.`,
              retryAfterSeconds: this.#retryAfter(rec),
            });
          }
        }
      }
      for (const inst of [...this.#instances.values()]) {
        if (
          inst.state === 'draining' &&
          inst.drainDeadline !== undefined &&
          now >= inst.drainDeadline
        ) {
          this.#stop(
            inst,
            'drain-deadline',
            `the drain deadline passed with ${inst.inFlight.size} request(s) still in flight`,
          );
          continue;
        }
        const expires = this.#expiresAt(inst);
        if (expires !== undefined && now >= expires) {
          this.#stop(
            inst,
            'ttl',
            `idle for ${now - inst.lastUsedAt} ms (TTL ${this.#ttl(inst)} ms)`,
          );
        }
      }
    });
  }

  /**
   * Unload a model. Idle: stopped now. Busy: drained (no new grants; stopped when its last request
   * ends or the drain deadline passes); with `force` stopped now. Loading: with `force` the load
   * is aborted, without it the model is drained once ready.
   */
  unload(model: string, opts: { force?: boolean } = {}): void {
    this.#run(() => {
      const inst = this.#models.get(model)?.instance;
      if (!inst || inst.state === 'stopping') return;
      if (opts.force) {
        this.#stop(inst, 'forced', 'forced unload');
        return;
      }
      if (inst.state === 'loading') inst.unloadWhenReady = true;
      else this.#drainOrStop(inst, 'unload', 'unload asked for');
    });
  }

  /** Stop taking requests: refuse the queued ones, drain busy models, stop the rest. */
  shutdown(): void {
    this.#run(() => {
      this.#closed = true;
      for (const rec of this.#models.values()) {
        for (const req of rec.queue.splice(0)) {
          this.#requests.delete(req.id);
          this.#fx.reject(req.id, {
            kind: 'shutting_down',
            model: rec.name,
            message: 'headroom is shutting down and takes no new requests.',
            retryAfterSeconds: 1,
          });
        }
        const inst = rec.instance;
        if (!inst || inst.state === 'stopping') continue;
        if (inst.state === 'loading') this.#stop(inst, 'shutdown', 'shutting down');
        else this.#drainOrStop(inst, 'shutdown', 'shutting down');
      }
    });
  }

  /**
   * A reading of the memory monitor (every sample). Sets the policy new loads follow (planned
   * smaller at medium and high, refused at critical, lighter while throttled); orders a trim of
   * the ready runners' prompt caches once per rise in level; at high and critical evicts idle
   * models, in eviction order, until `excessBytes` is covered — bytes of runners already stopping
   * or draining count as freed, pinned models go last and only at critical when the unpinned
   * ones are not enough, a busy model never; at critical with `cancelOnCritical`, cancels the
   * newest request in flight when even that is not enough (one at a time). A reading taken before
   * the last runner exit evicts and cancels nothing: it still counts what that exit returned.
   */
  pressure(report: PressureReport): void {
    this.#run(() => this.#reactToPressure(report));
  }

  setBudget(bytes: number): void {
    this.#run(() => {
      this.#s.budgetBytes = Math.max(0, bytes);
      this.#relieveOverBudget();
    });
  }

  /**
   * Sets the budget of each GPU, by device index (`computeGpuBudget`); a GPU past the end of the
   * list has none. Idle models holding memory on a GPU now over its budget are evicted.
   */
  setGpuBudgets(bytes: readonly number[]): void {
    this.#run(() => {
      this.#gpuBudgets = cleanGpuBytes(bytes);
      this.#s.gpuBudgetBytes = this.#gpuBudgets;
      this.#relieveOverBudget();
    });
  }

  /**
   * Replaces the limits (a config reload): queues, waits, drain, back-off, models loaded, recycling.
   * Requests queued and models loaded stay; a lower maxLoadedModels is met by the next loads'
   * evictions. The budgets have their own setters.
   */
  updateSettings(s: Omit<CoreSettings, 'budgetBytes' | 'gpuBudgetBytes'>): void {
    this.#run(() => {
      this.#s = {
        ...s,
        budgetBytes: this.#s.budgetBytes,
        gpuBudgetBytes: this.#gpuBudgets,
      };
    });
  }

  // ---- reads --------------------------------------------------------------------------------

  get settings(): Readonly<CoreSettings> {
    return this.#s;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The policy new loads follow now. */
  loadPolicy(): LoadPolicy {
    return this.#loadPolicy;
  }

  ledger(): LedgerView {
    return deviceLedger(this.#instances.values(), 'ram', this.#s.budgetBytes);
  }

  /**
   * The ledger of each GPU that has a budget or holds a charge, by device index. `measured` is
   * what ready runners hold there: the plan's figure, since runners do not report VRAM today.
   */
  gpuLedger(): GpuLedgerView[] {
    let n = this.#gpuBudgets.length;
    for (const i of this.#instances.values()) n = Math.max(n, i.gpuCharge.length);
    const out: GpuLedgerView[] = [];
    for (let g = 0; g < n; g++)
      out.push({ index: g, ...deviceLedger(this.#instances.values(), g, this.#gpuBudget(g)) });
    return out;
  }

  view(model: string): ModelView | undefined {
    const rec = this.#models.get(model);
    if (!rec) return undefined;
    const v: ModelView = {
      name: rec.name,
      queued: rec.queue.length,
      failures: rec.failures,
      waitingForRoom: this.#awaitingRoom === rec.name,
    };
    if (rec.backoffUntil > this.#now()) v.backoffUntil = rec.backoffUntil;
    if (rec.lastError !== undefined) v.lastError = rec.lastError;
    if (rec.lastLoadMs !== undefined) v.lastLoadMs = rec.lastLoadMs;
    const i = rec.instance;
    if (i) {
      v.instance = {
        id: i.id,
        state: i.state,
        config: i.config,
        predicted: i.predicted,
        charge: i.charge,
        gpuPredicted: [...i.gpuPredicted],
        gpuCharge: [...i.gpuCharge],
        inFlight: i.inFlight.size,
        served: i.served,
        loadStartedAt: i.loadStartedAt,
        lastUsedAt: i.lastUsedAt,
        ttlMs: this.#ttl(i),
      };
      if (i.measured !== undefined) v.instance.measured = i.measured;
      if (i.peak !== undefined) v.instance.peak = i.peak;
      if (i.readyAt !== undefined) v.instance.readyAt = i.readyAt;
      const exp = this.#expiresAt(i);
      if (exp !== undefined) v.instance.expiresAt = exp;
      if (i.drainDeadline !== undefined) v.instance.drainDeadline = i.drainDeadline;
      if (i.stopReason !== undefined) v.instance.stopReason = i.stopReason;
    }
    return v;
  }

  /** The instance a granted request holds (for its lease). */
  instanceOf(request: number): number | undefined {
    return this.#requests.get(request)?.instance;
  }

  /** The earliest time `tick()` has something to do; undefined when nothing is timed. */
  nextWakeAt(): number | undefined {
    let t = Number.POSITIVE_INFINITY;
    for (const rec of this.#models.values()) {
      const head = rec.queue[0];
      if (head) t = Math.min(t, head.enqueuedAt + this.#s.maxWaitMs);
    }
    for (const i of this.#instances.values()) {
      if (i.state === 'draining' && i.drainDeadline !== undefined) t = Math.min(t, i.drainDeadline);
      const exp = this.#expiresAt(i);
      if (exp !== undefined) t = Math.min(t, exp);
    }
    return Number.isFinite(t) ? t : undefined;
  }

  // ---- decisions ----------------------------------------------------------------------------

  /** Every input runs through here: no re-entry, then admission until nothing changes. */
  #run(fn: () => void): void {
    if (this.#busy) throw new Error('SchedulerCore re-entered from an effect (a bug in the shell)');
    this.#busy = true;
    try {
      fn();
      this.#pump();
    } finally {
      this.#busy = false;
    }
  }

  #model(name: string): ModelRec {
    let rec = this.#models.get(name);
    if (!rec) {
      rec = { name, queue: [], failures: 0, backoffUntil: 0 };
      this.#models.set(name, rec);
    }
    return rec;
  }

  #dequeue(req: Req): void {
    const rec = this.#models.get(req.model)!;
    const i = rec.queue.indexOf(req);
    if (i >= 0) rec.queue.splice(i, 1);
    this.#requests.delete(req.id);
    if (rec.queue.length === 0 && this.#awaitingRoom === rec.name) this.#awaitingRoom = undefined;
    if (rec.queue.length === 0) rec.gpuWait = undefined;
  }

  /** Models with waiters, oldest head first (fairness across models). */
  #pending(): ModelRec[] {
    return [...this.#models.values()]
      .filter((r) => r.queue.length > 0)
      .sort((a, b) => a.queue[0]!.seq - b.queue[0]!.seq);
  }

  #pump(): void {
    for (let guard = 0; guard < 10_000; guard++) {
      let changed = false;
      if (this.#awaitingRoom !== undefined && !this.#models.get(this.#awaitingRoom)?.queue.length)
        this.#awaitingRoom = undefined;
      for (const rec of this.#pending()) {
        if (this.#step(rec)) changed = true;
      }
      if (!changed) return;
    }
    throw new Error('SchedulerCore did not settle (a bug)');
  }

  /** One admission step for a model's queue head. Returns true when it changed something. */
  #step(rec: ModelRec): boolean {
    const now = this.#now();
    if (this.#closed) return false;
    if (rec.backoffUntil > now) {
      for (const req of rec.queue.splice(0)) {
        this.#requests.delete(req.id);
        this.#fx.reject(req.id, {
          kind: 'backoff',
          model: rec.name,
          message: `The model "${rec.name}" failed ${rec.failures} times in a row (last: ${rec.lastError ?? 'unknown'}); headroom waits before loading it again.`,
          retryAfterSeconds: Math.max(1, Math.ceil((rec.backoffUntil - now) / 1000)),
        });
      }
      if (this.#awaitingRoom === rec.name) this.#awaitingRoom = undefined;
      return true;
    }
    const head = rec.queue[0]!;
    const inst = rec.instance;
    if (inst) {
      if (inst.state !== 'ready') return false; // loading, draining or stopping: wait for it
      if (!compatible(inst.config, inst.plannedContext, head.needs)) {
        if (this.#loadPolicy.refuse) return this.#refuseUnderPressure(rec, head);
        // A larger context (or another KV type) than loaded: reload, draining first if busy.
        this.#drainOrStop(inst, 'reload', `a request needs ${describeNeeds(head.needs)}`);
        return true;
      }
      let granted = false;
      while (rec.queue.length > 0 && inst.inFlight.size < Math.max(1, inst.config.parallel)) {
        const next = rec.queue[0]!;
        if (!compatible(inst.config, inst.plannedContext, next.needs)) break;
        rec.queue.shift();
        next.instance = inst.id;
        next.grantSeq = this.#grantSeq++;
        inst.inFlight.add(next.id);
        inst.served++;
        inst.lastUsedAt = now;
        if (next.keepAliveMs !== undefined) inst.keepAliveMs = next.keepAliveMs;
        this.#fx.grant(next.id, inst.id);
        granted = true;
      }
      return granted;
    }
    if (this.#loadPolicy.refuse) return this.#refuseUnderPressure(rec, head);
    return this.#admit(rec, head);
  }

  /** Critical pressure: the head's load is refused. Not a failure of the model: no back-off. */
  #refuseUnderPressure(rec: ModelRec, head: Req): boolean {
    const refuse = this.#loadPolicy.refuse!;
    this.#dequeue(head);
    this.#fx.reject(head.id, {
      kind: 'pressure',
      model: rec.name,
      message: refuse.message,
      guidance: refuse.guidance,
      retryAfterSeconds: refuse.retryAfterSeconds,
    });
    return true;
  }

  /**
   * Plans with the load policy in force, so the config the core holds is the one the runner
   * runs: the plan for the request, then shrunk by the policy (adjustLoad) and planned again at
   * that context and KV type, so its bytes are the smaller config's. Batch and threads (thermal)
   * are lowered on the plan's config; its bytes stay those of the larger batch (an over-estimate,
   * never an under-estimate).
   */
  #planWithPolicy(
    model: string,
    needs: Needs,
    room: number,
    gpuRoom: readonly number[],
  ): PlanOutcome {
    const first = this.#plan(model, needs, room, gpuRoom);
    const policy = this.#loadPolicy;
    if (
      !first.fits ||
      (policy.shrinkSteps === 0 && policy.batchScale === 1 && policy.threadsLess === 0)
    )
      return first;
    const shaped = adjustLoad(first.config, policy, { keepKv: needs.kv !== undefined });
    let out: PlanFits = first;
    const shrunk =
      shaped.contextSize !== first.config.contextSize ||
      shaped.kvCacheKeyType !== first.config.kvCacheKeyType;
    if (shrunk) {
      const second = this.#plan(
        model,
        { ...needs, contextSize: shaped.contextSize, kv: shaped.kvCacheKeyType },
        room,
        gpuRoom,
      );
      if (second.fits) out = second;
    }
    return {
      ...out,
      config: {
        ...out.config,
        batchSize: Math.min(out.config.batchSize, shaped.batchSize),
        threads: Math.min(out.config.threads, shaped.threads),
      },
      degraded: out.degraded === true || shrunk,
    };
  }

  #reactToPressure(report: PressureReport): void {
    const { level } = report;
    const policy = loadPolicyFor(report);
    const changed = !samePolicy(policy, this.#loadPolicy);
    this.#loadPolicy = policy;
    if (changed) this.#fx.note?.({ type: 'load-policy', policy });
    const reason = `pressure ${level}${why(report)}`;
    if (level === 'low') this.#trimmedAt = undefined;
    else if (this.#trimmedAt === undefined || levelRank(this.#trimmedAt) < levelRank(level)) {
      // Once per rise in level: trimming again at the same level frees nothing new.
      this.#trimmedAt = level;
      const runners = [...this.#instances.values()]
        .filter((i) => i.state === 'ready')
        .map((i) => ({ instance: i.id, model: i.model }));
      this.#fx.trim?.({ level, reason, runners });
    }
    if (levelRank(level) < levelRank('high')) return;
    if (report.sampledAt <= this.#lastExitAt) return;
    let need = Math.max(0, report.excessBytes);
    for (const i of this.#instances.values())
      if (i.state === 'stopping' || i.state === 'draining') need -= held(i);
    if (need <= 0) return;
    const now = this.#now();
    const idle = this.#victimCandidates(held);
    const isPinned = (c: VictimCandidate): boolean =>
      this.#policy(this.#instances.get(c.instance)!.model).pinned;
    const chosen = pressureVictims(
      idle.filter((c) => !isPinned(c)),
      idle.filter(isPinned),
      need,
      now,
      level === 'critical',
    );
    for (const v of chosen.victims) {
      const inst = this.#instances.get(v.instance)!;
      const detail = v.pinned
        ? `${reason}: pinned but idle, and unpinned models were not enough; ${mib(v.need)} to free`
        : `${reason}: idle ${now - inst.lastUsedAt} ms, first in eviction order; ${mib(v.need)} to free`;
      this.#stop(inst, 'pressure', detail, level);
    }
    need = chosen.left;
    if (level !== 'critical') return;
    if (need <= 0 || !report.cancelOnCritical || this.#cancelled.size > 0) return;
    let newest: Req | undefined;
    for (const r of this.#requests.values()) {
      if (r.instance === undefined || r.grantSeq === undefined) continue;
      const st = this.#instances.get(r.instance)?.state;
      if (st !== 'ready' && st !== 'draining') continue;
      if (!newest || r.grantSeq > newest.grantSeq!) newest = r;
    }
    if (!newest) return;
    this.#cancelled.add(newest.id);
    this.#fx.cancelRequest?.({
      request: newest.id,
      instance: newest.instance!,
      model: newest.model,
      level,
      reason: `${reason}: evicting idle models was not enough (${mib(need)} still to free); the newest request is cancelled`,
    });
  }

  /** The eviction candidates (eviction.ts), each freeing `bytesOf(i)` of RAM. */
  #victimCandidates(bytesOf: (i: Instance) => number): VictimCandidate[] {
    return victimCandidates(
      this.#instances.values(),
      bytesOf,
      (i) => this.#models.get(i.model)!.lastLoadMs,
    );
  }

  /**
   * No instance of the model: plan, evict idle models if needed, load; or wait; or refuse. Every
   * device is checked alike: RAM against the budget, each GPU that has a budget against its own.
   */
  #admit(rec: ModelRec, head: Req): boolean {
    if (this.#awaitingRoom !== undefined && this.#awaitingRoom !== rec.name) return false;
    rec.gpuWait = undefined;
    const now = this.#now();
    const ledger = this.#ledgerTotal();
    const free = this.#s.budgetBytes - ledger;
    const nGpus = this.#gpuBudgets.length;
    const gpuFree = this.#gpuBudgets.map((b, g) => b - this.#gpuLedgerTotal(g));
    let coming = 0; // bytes of runners already told to stop: free once they exit
    const gpuComing = zeros(nGpus);
    let live = 0; // instances counted against maxLoadedModels
    let pinned = 0;
    const gpuPinned = zeros(nGpus);
    for (const i of this.#instances.values()) {
      if (i.state === 'stopping') {
        coming += i.charge;
        addGpus(gpuComing, i.gpuCharge);
        continue;
      }
      live++;
      if (this.#policy(i.model).pinned) {
        pinned += i.charge;
        addGpus(gpuPinned, i.gpuCharge);
      }
    }
    const candidates = this.#victimCandidates((i) => i.charge).filter(
      (c) => !this.#policy(this.#instances.get(c.instance)!.model).pinned,
    );
    const evictable = candidates.reduce((a, c) => a + c.charge, 0);
    const gpuEvictable = zeros(nGpus);
    for (const c of candidates) addGpus(gpuEvictable, c.gpus ?? []);
    const gpuRoom = gpuFree.map((f, g) => Math.max(0, f + gpuComing[g]! + gpuEvictable[g]!));
    const plan = this.#planWithPolicy(
      rec.name,
      head.needs,
      Math.max(0, free + coming + evictable),
      gpuRoom,
    );
    if (plan.fits) {
      const need = this.#gpuNeed(plan);
      const slotsNeeded = Math.max(0, live + 1 - this.#s.maxLoadedModels);
      if (plan.bytes <= free && need.every((n, g) => n <= gpuFree[g]!) && slotsNeeded === 0) {
        this.#startLoad(rec, head, plan);
        return true;
      }
      const deficit = Math.max(0, plan.bytes - free - coming);
      const gpuDeficit = need.map((n, g) => Math.max(0, n - gpuFree[g]! - gpuComing[g]!));
      const gpuShort = gpuDeficit.some((d) => d > 0);
      if (deficit === 0 && !gpuShort && slotsNeeded === 0) {
        // Victims are on their way out: wait for their exits.
        this.#awaitingRoom = rec.name;
        return false;
      }
      const shortage = (): string =>
        [
          ...(deficit > 0
            ? [
                `needs ${mib(plan.bytes)}, ${mib(Math.max(0, free))} free of ${mib(this.#s.budgetBytes)}`,
              ]
            : []),
          ...gpuShortages(need, gpuFree, this.#gpuBudgets, gpuDeficit),
        ].join('; ');
      const victims = chooseVictims(candidates, deficit, slotsNeeded, now, gpuDeficit);
      if (victims) {
        this.#awaitingRoom = rec.name;
        this.#fx.note?.({
          type: 'waiting-for-room',
          model: rec.name,
          needBytes: plan.bytes,
          freeBytes: free,
        });
        const short = deficit > 0 || gpuShort;
        for (const id of victims) {
          const v = this.#instances.get(id)!;
          const reason: StopReason = short ? 'evicted' : 'max-models';
          this.#stop(
            v,
            reason,
            short
              ? `to make room for "${rec.name}" (${shortage()}); idle ${now - v.lastUsedAt} ms`
              : `to load "${rec.name}" within maxLoadedModels=${this.#s.maxLoadedModels}; idle ${now - v.lastUsedAt} ms`,
          );
        }
        return true;
      }
      // Not enough idle models now: wait while busy or loading ones may become idle (the queue's
      // wait bound applies); refuse when nothing can change (pinned models hold the room), or
      // when a GPU could not hold the plan even with every unpinned model gone.
      const gpuNever = need.some((n, g) => n > this.#gpuBudgets[g]! - gpuPinned[g]!);
      if (!gpuNever && this.#progressPossible(rec.name, coming, gpuComing)) {
        if (gpuShort) rec.gpuWait = shortage();
        return false;
      }
      if (gpuShort) {
        const devices = gpuShortages(need, gpuFree, this.#gpuBudgets, gpuDeficit);
        return this.#refuse(rec, head, {
          fits: false,
          message: `"${rec.name}" needs more GPU memory than headroom can free (${devices.join('; ')}): ${gpuNever ? 'the GPU budget minus pinned models is too small' : 'pinned models hold the room'}.`,
          guidance: [
            ...devices.map((d) => `${d}: offload fewer layers (gpuLayers)`),
            'unpin a model',
            'raise the GPU memory budget (scheduler.budget.gpu)',
          ],
        });
      }
      return this.#refuse(rec, head, {
        fits: false,
        message: `"${rec.name}" needs ${mib(plan.bytes)} but pinned models hold the room (${mib(Math.max(0, free))} free of ${mib(this.#s.budgetBytes)}, maxLoadedModels=${this.#s.maxLoadedModels}).`,
        guidance: [
          'unpin a model',
          'raise the memory budget (scheduler.budget)',
          'raise scheduler.maxLoadedModels',
        ],
      });
    }
    // Nothing fits even with every idle model gone. Would it fit once busy models finish?
    const roomMax = Math.max(0, this.#s.budgetBytes - pinned);
    const gpuRoomMax = this.#gpuBudgets.map((b, g) => Math.max(0, b - gpuPinned[g]!));
    const later =
      roomMax > free + coming + evictable || gpuRoomMax.some((r, g) => r > gpuRoom[g]!)
        ? this.#planWithPolicy(rec.name, head.needs, roomMax, gpuRoomMax)
        : plan;
    if (
      later.fits &&
      this.#gpuNeed(later).every((n, g) => n <= gpuRoomMax[g]!) &&
      this.#progressPossible(rec.name, coming, gpuComing)
    )
      return false;
    return this.#refuse(rec, head, plan);
  }

  #refuse(rec: ModelRec, head: Req, plan: PlanRefused): boolean {
    this.#dequeue(head);
    this.#fx.reject(head.id, {
      kind: 'no_fit',
      model: rec.name,
      message: plan.message,
      guidance: plan.guidance,
      retryAfterSeconds: 5,
    });
    return true;
  }

  /** Whether some other model's state can still change without a new request (so waiting helps). */
  #progressPossible(model: string, coming: number, gpuComing: readonly number[]): boolean {
    if (coming > 0 || gpuComing.some((b) => b > 0)) return true;
    for (const i of this.#instances.values()) {
      if (i.model === model || this.#policy(i.model).pinned) continue;
      if (i.state === 'loading' || i.state === 'draining' || i.inFlight.size > 0) return true;
    }
    return false;
  }

  #startLoad(rec: ModelRec, head: Req, plan: PlanFits): void {
    const gpuBytes = cleanGpuBytes(plan.gpuBytes ?? []);
    rec.gpuWait = undefined;
    const inst: Instance = {
      id: this.#nextInstance++,
      model: rec.name,
      config: plan.config,
      state: 'loading',
      predicted: plan.bytes,
      charge: plan.bytes,
      gpuPredicted: gpuBytes,
      gpuCharge: [...gpuBytes],
      plannedContext: Math.max(plan.config.contextSize, head.needs.contextSize ?? 0),
      inFlight: new Set(),
      served: 0,
      loadStartedAt: this.#now(),
      lastUsedAt: this.#now(),
    };
    if (!plan.degraded) inst.plannedContext = plan.config.contextSize;
    rec.instance = inst;
    rec.lastBytes = plan.bytes;
    this.#instances.set(inst.id, inst);
    if (this.#awaitingRoom === rec.name) this.#awaitingRoom = undefined;
    if (plan.degraded)
      this.#fx.note?.({
        type: 'degraded',
        model: rec.name,
        bytes: plan.bytes,
        contextSize: plan.config.contextSize,
      });
    this.#fx.startLoad({
      instance: inst.id,
      model: rec.name,
      config: plan.config,
      bytes: plan.bytes,
      gpuBytes: [...gpuBytes],
      degraded: plan.degraded === true,
    });
  }

  #drainOrStop(inst: Instance, reason: StopReason, detail: string): void {
    if (inst.state === 'stopping') return;
    if (inst.inFlight.size === 0) {
      this.#stop(inst, reason, detail);
      return;
    }
    if (inst.state === 'draining') return;
    inst.state = 'draining';
    inst.stopReason = reason;
    inst.drainDeadline = this.#now() + this.#s.drainDeadlineMs;
    this.#fx.note?.({
      type: 'drain',
      model: inst.model,
      instance: inst.id,
      inFlight: inst.inFlight.size,
      deadline: inst.drainDeadline,
    });
  }

  #stop(inst: Instance, reason: StopReason, detail: string, level?: PressureLevel): void {
    if (inst.state === 'stopping') return;
    inst.state = 'stopping';
    inst.stopReason = reason;
    this.#fx.stop({
      instance: inst.id,
      model: inst.model,
      reason,
      detail,
      inFlight: inst.inFlight.size,
      bytes: held(inst),
      ...(level !== undefined ? { level } : {}),
    });
  }

  /** The instance is gone (exit or failed load): its bytes leave the ledger. */
  #remove(inst: Instance): void {
    this.#instances.delete(inst.id);
    this.#lastExitAt = this.#now();
    const rec = this.#models.get(inst.model)!;
    if (rec.instance === inst) rec.instance = undefined;
    // Requests still holding it keep their ids until they release; their release is a no-op.
  }

  #failure(rec: ModelRec, message: string): void {
    rec.failures++;
    rec.lastError = message;
    if (rec.failures >= 2) {
      const ms = Math.min(
        this.#s.backoffMaxMs,
        this.#s.backoffBaseMs * 2 ** Math.min(20, rec.failures - 2),
      );
      rec.backoffUntil = this.#now() + ms;
      this.#fx.note?.({
        type: 'backoff',
        model: rec.name,
        untilMs: rec.backoffUntil,
        failures: rec.failures,
      });
    }
  }

  #relieveOverBudget(): void {
    let over = this.#ledgerTotal() - this.#s.budgetBytes;
    const gpuOver = this.#gpuBudgets.map((b, g) => this.#gpuLedgerTotal(g) - b);
    if (over <= 0 && gpuOver.every((o) => o <= 0)) return;
    const now = this.#now();
    for (const i of this.#instances.values())
      if (i.state === 'stopping') {
        over -= i.charge;
        for (let g = 0; g < gpuOver.length; g++) gpuOver[g] = gpuOver[g]! - (i.gpuCharge[g] ?? 0);
      }
    if (over <= 0 && gpuOver.every((o) => o <= 0)) return;
    const gpuDeficit = gpuOver.map((o) => Math.max(0, o));
    const candidates = this.#victimCandidates((i) => i.charge).filter(
      (c) => !this.#policy(this.#instances.get(c.instance)!.model).pinned,
    );
    // Not enough: stop every candidate that frees bytes where the ledger is over.
    const all =
      chooseVictims(candidates, Math.max(0, over), 0, now, gpuDeficit) ??
      candidates
        .filter((c) => over > 0 || gpuDeficit.some((d, g) => d > 0 && (c.gpus?.[g] ?? 0) > 0))
        .map((c) => c.instance);
    const why = [
      ...(over > 0 ? [`measured memory is ${mib(over)} over the budget`] : []),
      ...gpuDeficit.flatMap((d, g) => (d > 0 ? [`GPU ${g} is ${mib(d)} over its budget`] : [])),
    ].join('; ');
    for (const id of all) {
      const v = this.#instances.get(id)!;
      this.#stop(v, 'over-budget', why);
    }
  }

  #ledgerTotal(): number {
    return deviceTotal(this.#instances.values(), 'ram');
  }

  #gpuLedgerTotal(g: number): number {
    return deviceTotal(this.#instances.values(), g);
  }

  /** A GPU's budget; Infinity for one without (it does not limit). */
  #gpuBudget(g: number): number {
    return this.#gpuBudgets[g] ?? Number.POSITIVE_INFINITY;
  }

  /** What a plan takes on each GPU that has a budget (GPUs without one do not limit). */
  #gpuNeed(plan: PlanOutcome): number[] {
    const bytes = plan.fits ? cleanGpuBytes(plan.gpuBytes ?? []) : [];
    return this.#gpuBudgets.map((_, g) => bytes[g] ?? 0);
  }

  #ttl(inst: Instance): number {
    if (inst.keepAliveMs === null) return Number.POSITIVE_INFINITY;
    if (inst.keepAliveMs !== undefined) return Math.max(0, inst.keepAliveMs);
    return this.#policy(inst.model).ttlMs;
  }

  #expiresAt(inst: Instance): number | undefined {
    if (inst.state !== 'ready' || inst.inFlight.size > 0) return undefined;
    if (this.#policy(inst.model).pinned) return undefined;
    const ttl = this.#ttl(inst);
    return Number.isFinite(ttl) ? inst.lastUsedAt + ttl : undefined;
  }

  #retryAfter(rec: ModelRec): number {
    return Math.max(1, Math.ceil((rec.lastLoadMs ?? 1000) / 1000));
  }
}

/** Bytes an instance holds: its measured resident set when known, else its ledger charge. */
function held(i: Instance): number {
  return i.measured ?? i.charge;
}

function describeNeeds(n: Needs): string {
  const parts: string[] = [];
  if (n.contextSize !== undefined) parts.push(`context ${n.contextSize}`);
  if (n.kv !== undefined) parts.push(`a ${n.kv} KV cache`);
  if (n.parallel !== undefined) parts.push(`${n.parallel} slots`);
  return parts.join(', ') || 'another config';
}

/** "GPU g: needs X, Y free of Z" for each GPU that is short. */
function gpuShortages(
  need: readonly number[],
  free: readonly number[],
  budgets: readonly number[],
  deficit: readonly number[],
): string[] {
  const out: string[] = [];
  deficit.forEach((d, g) => {
    if (d > 0)
      out.push(
        `GPU ${g}: needs ${mib(need[g]!)}, ${mib(Math.max(0, free[g]!))} free of ${mib(budgets[g]!)}`,
      );
  });
  return out;
}
