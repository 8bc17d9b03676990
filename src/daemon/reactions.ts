/**
 * The effectful side of pressure reactions: on every sample, ask the pure policy
 * (monitor/reactions.ts) what to do and do it through injected effects — unload idle models,
 * set the policy new loads must follow, trim prompt caches, cancel a request. Each reaction is
 * published on the monitor's event stream with its reason, the bytes it freed and its time.
 *
 * Contract: it never unloads a model with requests in flight (the policy never asks), never
 * starts a second unload of a model whose unload is under way, and never acts on a sample read
 * before its last unload finished (that sample still counts the memory the unload returned). Listeners return at once; unloads
 * run in the background and their failures are published, never thrown.
 */
import os from 'node:os';
import type { Config } from '../config/load.js';
import { trimReportSchema } from '../engines/embedded/index.js';
import { HeadroomError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { MonitorConfig } from '../monitor/config.js';
import { defaultThresholds, thresholdsFromConfig } from '../monitor/pressure.js';
import {
  adjustLoad,
  decideReactions,
  NORMAL_LOAD_POLICY,
  type AdjustableLoad,
  type LoadPolicy,
  type ReactionModel,
} from '../monitor/reactions.js';
import {
  Sampler,
  type MonitorSample,
  type ReactionRecord,
  type WatchedProcess,
} from '../monitor/sampler.js';
import { presetFor } from '../planner/presets.js';
import type { ModelManager, ModelStatus } from '../scheduler/model-manager.js';

/** What reactions need of the scheduler (ModelManager's list/unload fit it as they are). */
export interface ReactionDeps {
  list(): ReadonlyArray<
    Pick<ModelStatus, 'name' | 'state' | 'inFlight' | 'pid' | 'lastUsedAt'> & {
      pinned?: boolean;
      priority?: number;
    }
  >;
  unload(name: string, opts: { reason: string }): Promise<unknown>;
  setLoadPolicy(policy: LoadPolicy): void;
  /** Trims runners' prompt caches; resolves with the bytes freed. Absent: reported as unsupported. */
  trimPromptCaches?(reason: string): Promise<number>;
  /** Cancels the lowest-priority request in flight on a model. Absent: reported as unsupported. */
  cancelRequest?(model: string, reason: string): Promise<void>;
}

/** The sampler side reactions use (Sampler implements it). */
export type ReactionSource = Pick<Sampler, 'on' | 'off' | 'publish'>;

export interface Reactions {
  /** The policy new loads must follow now. */
  policy(): LoadPolicy;
  /** Stops reacting (unloads under way finish). Idempotent. */
  dispose(): void;
}

export interface ReactionOptions {
  cancelOnCritical?: boolean;
}

export function attachReactions(
  deps: ReactionDeps,
  sampler: ReactionSource,
  opts: ReactionOptions = {},
): Reactions {
  let policy: LoadPolicy = NORMAL_LOAD_POLICY;
  let policyKey = JSON.stringify(policy);
  let trimmedAt: MonitorSample['pressure']['level'] | undefined;
  const unloading = new Set<string>();
  const cancelling = new Set<string>();
  // When the last unload finished: a sample read before then still counts the memory that
  // unload returned, so it may not ask for more unloads (or cancellations) — the next one decides.
  let settledAt = Number.NEGATIVE_INFINITY;
  let disposed = false;

  const publish = (r: ReactionRecord): void =>
    sampler.publish({ type: 'reaction', at: Date.now(), reaction: r });

  const onSample = (sample: MonitorSample): void => {
    if (disposed) return;
    const level = sample.pressure.level;
    const bytesByPid = new Map(
      sample.processes.filter((p) => p.role === 'runner').map((p) => [p.pid, p.rss]),
    );
    const models: ReactionModel[] = deps.list().map((m) => ({
      name: m.name,
      // An unload we started counts as stopping even before the scheduler says so.
      state: unloading.has(m.name) ? 'stopping' : m.state,
      inFlight: m.inFlight,
      ...(m.lastUsedAt === undefined ? {} : { lastUsedAt: m.lastUsedAt }),
      ...(m.pinned === undefined ? {} : { pinned: m.pinned }),
      ...(m.priority === undefined ? {} : { priority: m.priority }),
      bytes: m.pid === undefined ? 0 : (bytesByPid.get(m.pid) ?? 0),
    }));
    const plan = decideReactions({
      level,
      throttled: sample.thermal.throttled,
      models,
      excessBytes: sample.pressure.excessBytes,
      cancelOnCritical: opts.cancelOnCritical ?? false,
      reasons: sample.pressure.reasons,
    });

    const key = JSON.stringify({ ...plan.policy, reasons: undefined });
    if (key !== policyKey) {
      policyKey = key;
      policy = plan.policy;
      deps.setLoadPolicy(policy);
      publish({
        action: 'load-policy',
        level,
        reason:
          policy.reasons.length > 0
            ? `new loads: ${describePolicy(policy)} (${policy.reasons.join('; ')})`
            : 'new loads: as planned',
        bytesFreed: 0,
        ms: 0,
        outcome: 'done',
      });
    }
    if (level === 'low') trimmedAt = undefined;

    const stale = sample.at <= settledAt;
    for (const a of plan.actions) {
      const t0 = performance.now();
      if (stale && a.type !== 'trim-prompt-caches') continue;
      if (a.type === 'unload') {
        if (unloading.has(a.model)) continue;
        unloading.add(a.model);
        deps
          .unload(a.model, { reason: a.reason })
          .then(
            () =>
              publish({
                action: 'unload',
                model: a.model,
                level,
                reason: a.reason,
                bytesFreed: a.bytes,
                ms: Math.round(performance.now() - t0),
                outcome: 'done',
              }),
            (err: unknown) =>
              publish({
                action: 'unload',
                model: a.model,
                level,
                reason: a.reason,
                bytesFreed: 0,
                ms: Math.round(performance.now() - t0),
                outcome: 'failed',
                error: err instanceof Error ? err.message : String(err),
              }),
          )
          .finally(() => {
            unloading.delete(a.model);
            settledAt = Date.now();
          });
      } else if (a.type === 'trim-prompt-caches') {
        // Once per rise in level: trimming again at the same level frees nothing new.
        if (trimmedAt !== undefined && rank(trimmedAt) >= rank(level)) continue;
        trimmedAt = level;
        if (!deps.trimPromptCaches) {
          publish({
            action: 'trim-prompt-caches',
            level,
            reason: a.reason,
            bytesFreed: 0,
            ms: 0,
            outcome: 'unsupported',
          });
          continue;
        }
        deps.trimPromptCaches(a.reason).then(
          (bytes) =>
            publish({
              action: 'trim-prompt-caches',
              level,
              reason: a.reason,
              bytesFreed: bytes,
              ms: Math.round(performance.now() - t0),
              outcome: 'done',
            }),
          (err: unknown) =>
            publish({
              action: 'trim-prompt-caches',
              level,
              reason: a.reason,
              bytesFreed: 0,
              ms: Math.round(performance.now() - t0),
              outcome: 'failed',
              error: String(err),
            }),
        );
      } else {
        if (cancelling.has(a.model)) continue;
        if (!deps.cancelRequest) {
          publish({
            action: 'cancel-request',
            model: a.model,
            level,
            reason: a.reason,
            bytesFreed: 0,
            ms: 0,
            outcome: 'unsupported',
          });
          continue;
        }
        cancelling.add(a.model);
        deps
          .cancelRequest(a.model, a.reason)
          .then(
            () =>
              publish({
                action: 'cancel-request',
                model: a.model,
                level,
                reason: a.reason,
                bytesFreed: 0,
                ms: Math.round(performance.now() - t0),
                outcome: 'done',
              }),
            (err: unknown) =>
              publish({
                action: 'cancel-request',
                model: a.model,
                level,
                reason: a.reason,
                bytesFreed: 0,
                ms: Math.round(performance.now() - t0),
                outcome: 'failed',
                error: String(err),
              }),
          )
          .finally(() => cancelling.delete(a.model));
      }
    }
  };

  sampler.on('sample', onSample);
  return {
    policy: () => policy,
    dispose: () => {
      if (disposed) return;
      disposed = true;
      sampler.off('sample', onSample);
    },
  };
}

const LEVEL_ORDER = ['low', 'medium', 'high', 'critical'];
const rank = (l: string): number => LEVEL_ORDER.indexOf(l);

function describePolicy(p: LoadPolicy): string {
  const parts: string[] = [];
  if (p.refuse) parts.push('refused');
  if (p.shrinkSteps > 0) parts.push(`${p.shrinkSteps} step(s) smaller`);
  if (p.batchScale !== 1) parts.push(`batch ×${p.batchScale}`);
  if (p.threadsLess > 0) parts.push(`${p.threadsLess} thread(s) fewer`);
  return parts.join(', ') || 'as planned';
}

/** A load refused because memory pressure is critical: 503 with guidance and Retry-After. */
export class PressureRefusedError extends HeadroomError {
  override readonly name = 'PressureRefusedError';
  constructor(model: string, refuse: NonNullable<LoadPolicy['refuse']>) {
    super('memory_pressure', `Not loading "${model}": ${refuse.message}`, {
      status: 503,
      details: { retryAfterSeconds: refuse.retryAfterSeconds },
    });
  }
}

/**
 * Applies a load policy to a new load's config: throws PressureRefusedError when loads are
 * refused, else returns the config made smaller / lighter as the policy says.
 */
export function applyLoadPolicy<T extends AdjustableLoad>(
  policy: LoadPolicy,
  model: string,
  config: T,
): T {
  if (policy.refuse) throw new PressureRefusedError(model, policy.refuse);
  return adjustLoad(config, policy);
}

// ---------------------------------------------------------------------------------------------
// Wiring for the daemon (daemon/headroom.ts calls this once)

export interface PressureMonitor {
  readonly sampler: Sampler;
  /** Adjusts (or refuses) a new load by the current policy. */
  adjust<T extends AdjustableLoad>(model: string, config: T): T;
  dispose(): Promise<void>;
}

/** How long one runner's POST /trim may take before it counts as failed. */
export const TRIM_TIMEOUT_MS = 5000;

/**
 * POSTs /trim to every ready runner, idle or busy (a trim never disturbs a request), at once;
 * resolves with the bytes they freed, summed as each measured them. A runner that fails, answers
 * something else or takes longer than `timeoutMs` is logged and counts 0; this never rejects.
 */
export async function trimRunners(
  models: ReadonlyArray<Pick<ModelStatus, 'name' | 'state' | 'url'>>,
  reason: string,
  log: Pick<Logger, 'warn' | 'debug'>,
  timeoutMs = TRIM_TIMEOUT_MS,
): Promise<number> {
  const freed = await Promise.all(
    models
      .filter((m) => m.state === 'ready' && m.url !== undefined)
      .map(async (m): Promise<number> => {
        try {
          const res = await fetch(new URL('/trim', m.url), {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ reason }),
            signal: AbortSignal.timeout(timeoutMs),
          });
          if (!res.ok) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
          const report = trimReportSchema.parse(await res.json());
          log.debug({ model: m.name, ...report }, 'runner trimmed');
          return report.freedBytes;
        } catch (err) {
          log.warn(
            { model: m.name, err: err instanceof Error ? err.message : String(err) },
            'trimming a runner failed',
          );
          return 0;
        }
      }),
  );
  return freed.reduce((a, b) => a + b, 0);
}

/**
 * Starts the sampler over the manager's runners, attaches reactions (unless
 * `monitor.reactions` is false) and forwards the manager's load/unload events to the stream.
 * Thresholds: the config's, else the memory-class preset of this machine.
 */
export async function startPressureMonitor(
  config: Pick<Config, 'monitor'>,
  manager: Pick<ModelManager, 'list' | 'unload' | 'cancelRequest' | 'on' | 'off'>,
  log: Logger,
): Promise<PressureMonitor> {
  const mc: MonitorConfig = config.monitor;
  const preset = presetFor(os.totalmem());
  const thresholds = thresholdsFromConfig(
    defaultThresholds(preset, {
      ...(mc.lowMemory === undefined ? {} : { lowMemory: mc.lowMemory }),
      ...(mc.optimisation === undefined ? {} : { optimisation: mc.optimisation }),
    }),
    mc.thresholds,
  );
  const sampler = await Sampler.create({
    intervalMs: mc.interval,
    historySize: mc.historySize,
    thresholds,
    throttleCelsius: mc.thermal.throttleCelsius,
    trends: mc.trends,
    processes: (): WatchedProcess[] =>
      manager
        .list()
        .flatMap((m) =>
          m.pid !== undefined && m.state !== 'unloaded' && m.state !== 'failed'
            ? [{ pid: m.pid, name: m.name, idle: m.inFlight === 0 }]
            : [],
        ),
  });
  let policy: LoadPolicy = NORMAL_LOAD_POLICY;
  const reactions = mc.reactions
    ? attachReactions(
        {
          list: () => manager.list(),
          unload: (name, o) => manager.unload(name, { reason: o.reason }),
          trimPromptCaches: (reason) => trimRunners(manager.list(), reason, log),
          cancelRequest: async (model, reason) => {
            await manager.cancelRequest(model, reason);
          },
          setLoadPolicy: (p) => {
            policy = p;
          },
        },
        sampler,
        { cancelOnCritical: mc.cancelOnCritical },
      )
    : undefined;
  const onManager = (e: { type: string; model: string }): void =>
    sampler.publish({ type: 'model', at: Date.now(), event: { ...e } });
  manager.on('event', onManager);
  sampler.on('level-change', (c) =>
    log[c.to === 'low' ? 'info' : 'warn'](
      { from: c.from, to: c.to, reasons: c.reasons },
      'memory pressure level changed',
    ),
  );
  sampler.on('alert', (a) => log.warn({ alert: a }, a.message));
  sampler.on('event', (e) => {
    if (e.type === 'reaction' && e.reaction.action !== 'load-policy')
      log.info(e.reaction, 'pressure reaction');
  });
  log.debug(
    { intervalMs: sampler.intervalMs, facts: sampler.facts, reactions: mc.reactions },
    'memory monitor started',
  );
  let disposed: Promise<void> | undefined;
  return {
    sampler,
    adjust: (model, cfg) => applyLoadPolicy(policy, model, cfg),
    dispose: () => {
      disposed ??= (async () => {
        reactions?.dispose();
        manager.off('event', onManager);
        await sampler.dispose();
      })();
      return disposed;
    },
  };
}
