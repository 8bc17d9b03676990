import { isDeepStrictEqual } from 'node:util';
import type { Config } from '../config/load.js';
import type { RunnerConfig } from '../engines/types.js';
import type { CoreSettings } from '../scheduler/core-types.js';

/**
 * What a config reload changes, decided before anything is touched (pure), and the settings the
 * scheduler takes from a config (used at start and at every reload, so both agree).
 *
 * A reload is build-new → swap → dispose-old: the new config is validated and its parts built
 * (catalog scanned, a new monitor started when its section changed) while the old ones still
 * serve; then the core switches to them in one synchronous step; then what the new config no
 * longer has is let go (the old monitor stopped, runners of models no longer in the catalog
 * drained — their requests in flight finish). A config that fails validation or whose parts fail
 * to build is refused whole and the old one stays.
 */

/** Keys read once, when the daemon starts: a change is kept in the config but takes a restart. */
export const RESTART_KEYS = [
  'host',
  'port',
  'limits.maxBodyBytes',
  'engines',
  'security',
  // The logger is made once, when the daemon starts.
  'logFormat',
  // The saved-state cache (its directory, byte cap, thresholds) is opened once, at start.
  'state',
] as const;

export interface ConfigChanges {
  /** Top-level keys (and `limits.*`) whose value changed. */
  changed: string[];
  /** Of those, the ones that take effect only after a restart. */
  restartNeeded: string[];
  monitorChanged: boolean;
  budgetChanged: boolean;
  catalogChanged: boolean;
}

export function configChanges(old: Config, next: Config): ConfigChanges {
  const changed: string[] = [];
  const keys = new Set([...Object.keys(old), ...Object.keys(next)]) as Set<keyof Config>;
  for (const k of keys) {
    if (k === 'limits') {
      for (const l of Object.keys(next.limits) as Array<keyof Config['limits']>)
        if (old.limits[l] !== next.limits[l]) changed.push(`limits.${l}`);
    } else if (!isDeepStrictEqual(old[k], next[k])) changed.push(k);
  }
  changed.sort();
  return {
    changed,
    restartNeeded: changed.filter((c) => (RESTART_KEYS as readonly string[]).includes(c)),
    monitorChanged: changed.includes('monitor'),
    budgetChanged: !isDeepStrictEqual(old.scheduler.budget, next.scheduler.budget),
    catalogChanged:
      changed.includes('modelDirs') ||
      changed.includes('models') ||
      changed.some((c) => c.startsWith('discover')),
  };
}

/** The scheduler's limits from a config (its budgets are set apart, once the machine is read). */
export function schedulerSettings(
  config: Config,
): Omit<CoreSettings, 'budgetBytes' | 'gpuBudgetBytes'> {
  const sc = config.scheduler;
  return {
    maxLoadedModels: sc.maxLoadedModels,
    maxQueue: sc.queue.maxLength,
    maxWaitMs: sc.queue.maxWaitMs,
    drainDeadlineMs: sc.drainDeadlineMs,
    backoffBaseMs: sc.backoff.baseMs,
    backoffMaxMs: sc.backoff.maxMs,
    ...(sc.recycle ? { recycle: sc.recycle } : {}),
  };
}

/** The runner settings a model starts from before its own (`models.<name>`). */
export function runnerDefaults(
  config: Config,
  engine: RunnerConfig['engine'],
  cores: number,
): Omit<RunnerConfig, 'modelPath'> {
  const r = config.runner;
  return {
    engine,
    contextSize: r.contextSize,
    parallel: r.parallel,
    threads: Math.min(r.threads ?? cores, cores),
    batchSize: r.batchSize,
    flashAttention: r.flashAttention,
    kvCacheKeyType: r.kvCacheType,
    kvCacheValueType: r.kvCacheType,
    mmap: r.mmap,
    gpuLayers: r.gpuLayers,
  };
}

/** What a reload did, as the API answers it. */
export interface ReloadResult {
  /** False when the new config equals the one in force (nothing was done). */
  applied: boolean;
  changed: string[];
  /** Changed keys that take effect only after a restart (kept in the config until then). */
  restartNeeded: string[];
  /** Models no longer in the catalog whose runners are being drained and stopped. */
  removedModels: string[];
  /** The models known after the reload. */
  models: string[];
}
