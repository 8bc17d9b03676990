import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { HeadroomError } from '../lib/errors.js';
import { configSchema, type ParsedConfig } from './schema.js';
import { parseByteSize, parseDuration } from './units.js';

/** The normalised configuration: units resolved to numbers (bytes, milliseconds). */
/** The scheduler's settings with units resolved (bytes, milliseconds; Infinity = never / no limit). */
export interface SchedulerConfig {
  budget: {
    fraction: number;
    capBytes?: number;
    reserveBytes: number;
    /** The same budget for each GPU. */
    gpu: { fraction: number; capBytes?: number; reserveBytes: number };
  };
  ttlMs: number;
  maxLoadedModels: number;
  queue: { maxLength: number; maxWaitMs: number };
  drainDeadlineMs: number;
  optimisation: ParsedConfig['scheduler']['optimisation'];
  pin: string[];
  preload: string[];
  backoff: { baseMs: number; maxMs: number };
  measureIntervalMs: number;
  /** Restarting runners that grew past their plan; undefined = never. */
  recycle?: { growthBytes: number; fraction: number; minRequests: number };
}

export interface Config extends Omit<ParsedConfig, 'limits' | 'logs' | 'scheduler'> {
  scheduler: SchedulerConfig;
  limits: {
    maxBodyBytes: number;
    loadTimeoutMs: number;
    stallTimeoutMs: number;
    stopGraceMs: number;
    /** Liveness checks of loaded runners; Infinity: off. */
    healthIntervalMs: number;
    healthTimeoutMs: number;
  };
  logs: { maxBytes: number; keep: number };
}

export class ConfigError extends HeadroomError {
  override readonly name = 'ConfigError';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('CONFIG_INVALID', message, { status: 400, details });
  }
}

/** Renders zod issues as "key.path: what is wrong", one line each. */
export function issueLines(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((i) => {
    const path = i.path.length > 0 ? i.path.join('.') : '(top level)';
    if (i.code === 'unrecognized_keys')
      return `${path}: unknown key(s) ${i.keys.map((k) => `"${k}"`).join(', ')}`;
    return `${path}: ${i.message}`;
  });
}

/** Renders zod issues as "key.path: what is wrong" lines joined by "; ". */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issueLines(issues).join('; ');
}

/**
 * parse → defaults → validate → normalise, in one pure function over the YAML text.
 * `source` names the file in error messages.
 */
export function loadConfig(text: string, source = 'config'): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new ConfigError(`${source}: YAML syntax error: ${e.message.split('\n')[0]}`);
  }
  const raw: unknown = doc.toJS() ?? {};
  return normaliseConfig(raw, source);
}

/** Validates and normalises an already-parsed object (flags merged into the YAML, or a library caller's options). */
export function normaliseConfig(raw: unknown, source = 'config'): Config {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(
      `${source}: the top level must be a mapping of keys (host, port, modelDirs, …)`,
    );
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = issueLines(parsed.error.issues);
    throw new ConfigError(`${source}: ${issues.join('; ')}`, { issues });
  }
  const c = parsed.data;
  return {
    ...c,
    limits: {
      maxBodyBytes: parseByteSize(c.limits.maxBodyBytes),
      loadTimeoutMs: parseDuration(c.limits.loadTimeout),
      stallTimeoutMs: parseDuration(c.limits.stallTimeout),
      stopGraceMs: parseDuration(c.limits.stopGrace),
      healthIntervalMs: parseDuration(c.limits.healthInterval),
      healthTimeoutMs: parseDuration(c.limits.healthTimeout),
    },
    logs: { maxBytes: parseByteSize(c.logs.maxBytes), keep: c.logs.keep },
    scheduler: normaliseScheduler(c.scheduler),
  };
}

function normaliseScheduler(s: ParsedConfig['scheduler']): SchedulerConfig {
  const measureIntervalMs = parseDuration(s.measureInterval);
  if (!Number.isFinite(measureIntervalMs) || measureIntervalMs < 100)
    throw new ConfigError('scheduler.measureInterval must be a duration of at least 100ms');
  return {
    budget: {
      fraction: s.budget.fraction,
      ...(s.budget.cap !== undefined ? { capBytes: parseByteSize(s.budget.cap) } : {}),
      reserveBytes: parseByteSize(s.budget.reserve),
      gpu: {
        fraction: s.budget.gpu.fraction,
        ...(s.budget.gpu.cap !== undefined ? { capBytes: parseByteSize(s.budget.gpu.cap) } : {}),
        reserveBytes: parseByteSize(s.budget.gpu.reserve),
      },
    },
    ttlMs: parseDuration(s.ttl),
    maxLoadedModels: s.maxLoadedModels ?? Number.POSITIVE_INFINITY,
    queue: { maxLength: s.queue.maxLength, maxWaitMs: parseDuration(s.queue.maxWait) },
    drainDeadlineMs: parseDuration(s.drainDeadline),
    optimisation: s.optimisation,
    pin: s.pin,
    preload: s.preload,
    backoff: { baseMs: parseDuration(s.backoff.base), maxMs: parseDuration(s.backoff.max) },
    measureIntervalMs,
    ...(s.recycle.enabled
      ? {
          recycle: {
            growthBytes: parseByteSize(s.recycle.growth),
            fraction: s.recycle.fraction,
            minRequests: s.recycle.minRequests,
          },
        }
      : {}),
  };
}
