/**
 * The daemon's side of memory pressure. Every sample of the monitor goes to the scheduler as a
 * pressure report (ModelManager.reportPressure): the scheduler core decides what it means — the
 * policy new loads follow, prompt-cache trims, which idle models to evict, refusals, a
 * cancellation — and its shell carries that out. This file only feeds it and publishes what was
 * done on the monitor's event stream (`/admin/events`): each unload, trim, cancellation and
 * load-policy change with its reason, the bytes it freed and its time.
 *
 * Contract: a listener returns at once (the sampler's listeners must not block); nothing here
 * decides whether to unload, refuse or cancel.
 */
import os from 'node:os';
import type { Config } from '../config/load.js';
import type { Logger } from '../lib/logger.js';
import type { MonitorConfig } from '../config/monitor.js';
import { defaultThresholds, thresholdsFromConfig } from '../monitor/pressure.js';
import type { MonitorSample, ReactionRecord, WatchedProcess } from '../monitor/feed.js';
import { Sampler } from '../monitor/sampler.js';
import { MonitorHub } from './monitor-feed.js';
import { ensureDaemonOomScore } from './oom-score.js';
import { presetFor } from '../planner/presets.js';
import type { ManagerEvent, ModelManager } from '../scheduler/model-manager.js';
import { describePolicy } from '../scheduler/pressure.js';

/** What reactions need of the scheduler (ModelManager fits it as it is). */
export type ReactionDeps = Pick<ModelManager, 'reportPressure' | 'on' | 'off'>;

/** The monitor side reactions use (the daemon's MonitorHub implements it). */
export type ReactionSource = Pick<MonitorHub, 'on' | 'off' | 'publish'>;

export interface Reactions {
  /** Stops feeding samples and publishing reactions. Idempotent. */
  dispose(): void;
}

export interface ReactionOptions {
  /** `monitor.cancelOnCritical`. Defaults to false. */
  cancelOnCritical?: boolean;
}

/**
 * Feeds every sample to the scheduler and publishes the scheduler's pressure reactions. The
 * scheduler's clock must be the sampler's (both Date.now in the daemon): a report carries the
 * time its sample was read.
 */
export function attachReactions(
  deps: ReactionDeps,
  sampler: ReactionSource,
  opts: ReactionOptions = {},
): Reactions {
  let disposed = false;
  const publish = (r: ReactionRecord): void =>
    sampler.publish({ type: 'reaction', at: Date.now(), reaction: r });

  const onSample = (sample: MonitorSample): void => {
    if (disposed) return;
    deps.reportPressure({
      level: sample.pressure.level,
      excessBytes: sample.pressure.excessBytes,
      throttled: sample.thermal.throttled,
      reasons: sample.pressure.reasons,
      sampledAt: sample.at,
      cancelOnCritical: opts.cancelOnCritical ?? false,
    });
  };
  const onEvent = (e: ManagerEvent): void => {
    const r = reactionRecord(e);
    if (r) publish(r);
  };

  sampler.on('sample', onSample);
  deps.on('event', onEvent);
  return {
    dispose: () => {
      if (disposed) return;
      disposed = true;
      sampler.off('sample', onSample);
      deps.off('event', onEvent);
    },
  };
}

/** The record published for a scheduler event that is a pressure reaction; undefined otherwise. */
export function reactionRecord(e: ManagerEvent): ReactionRecord | undefined {
  switch (e.type) {
    case 'load-policy':
      return {
        action: 'load-policy',
        level: e.policy.level,
        reason:
          e.policy.reasons.length > 0
            ? `new loads: ${describePolicy(e.policy)} (${e.policy.reasons.join('; ')})`
            : 'new loads: as planned',
        bytesFreed: 0,
        ms: 0,
        outcome: 'done',
      };
    case 'unload':
      if (e.level === undefined) return undefined;
      return {
        action: 'unload',
        model: e.model,
        level: e.level,
        reason: e.detail ?? e.reason,
        bytesFreed: e.bytes ?? 0,
        ms: e.ms ?? 0,
        outcome: 'done',
      };
    case 'trim':
      return {
        action: 'trim-prompt-caches',
        level: e.level,
        reason: e.reason,
        bytesFreed: e.freedBytes,
        ms: e.ms,
        outcome: e.outcome,
      };
    case 'request-cancelled':
      return {
        action: 'cancel-request',
        model: e.model,
        level: e.level,
        reason: e.reason,
        bytesFreed: 0,
        ms: 0,
        outcome: e.outcome,
        ...(e.error !== undefined ? { error: e.error } : {}),
      };
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring for the daemon (daemon/headroom.ts calls this once)

export interface PressureMonitor {
  /** The sampler's feed, with the scheduler's events (`/admin/events`). */
  readonly feed: MonitorHub;
  dispose(): Promise<void>;
}

/** How long one runner's POST /trim may take before it counts as failed. */
export const TRIM_TIMEOUT_MS = 5000;

/**
 * Starts the sampler over the manager's runners, feeds its samples to the scheduler (unless
 * `monitor.reactions` is false) and forwards the manager's events to the stream. Thresholds:
 * the config's, else the memory-class preset of this machine.
 */
export async function startPressureMonitor(
  config: Pick<Config, 'monitor'>,
  manager: Pick<ModelManager, 'list' | 'reportPressure' | 'on' | 'off'>,
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
  const daemonOomScoreAdj = process.platform === 'linux' ? ensureDaemonOomScore() : undefined;
  const sampler = await Sampler.create({
    ...(daemonOomScoreAdj === undefined ? {} : { daemonOomScoreAdj }),
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
  const feed = new MonitorHub(sampler);
  const reactions = mc.reactions
    ? attachReactions(manager, feed, { cancelOnCritical: mc.cancelOnCritical })
    : undefined;
  const onManager = (e: ManagerEvent): void => {
    if (e.type === 'trim')
      for (const f of e.failures)
        log.warn({ model: f.model, err: f.error }, 'trimming a runner failed');
    if ('model' in e) feed.publish({ type: 'model', at: Date.now(), event: { ...e } });
  };
  manager.on('event', onManager);
  sampler.on('level-change', (c) =>
    log[c.to === 'low' ? 'info' : 'warn'](
      { from: c.from, to: c.to, reasons: c.reasons },
      'memory pressure level changed',
    ),
  );
  sampler.on('alert', (a) => log.warn({ alert: a }, a.message));
  feed.on('event', (e) => {
    if (e.type === 'reaction' && e.reaction.action !== 'load-policy')
      log.info(e.reaction, 'pressure reaction');
  });
  log.debug(
    { intervalMs: sampler.intervalMs, facts: sampler.facts, reactions: mc.reactions },
    'memory monitor started',
  );
  let disposed: Promise<void> | undefined;
  return {
    feed,
    dispose: () => {
      disposed ??= (async () => {
        reactions?.dispose();
        manager.off('event', onManager);
        feed.dispose();
        await sampler.dispose();
      })();
      return disposed;
    },
  };
}
