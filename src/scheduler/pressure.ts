import type { KvCacheType, RunnerConfig } from '../engines/types.js';
import type { PressureLevel } from '../monitor/pressure.js';

/**
 * Memory pressure as an input of the scheduler core: what the monitor reports, and the pure
 * parts of the core's answer to it (the load policy, and how it shapes a planned config). The
 * core (core.ts `pressure()`) decides the actions; the shell carries them out as effects.
 *
 *   low      nothing; new loads as planned.
 *   medium   new loads planned one step smaller (KV type or context); runners' prompt caches trimmed.
 *   high     new loads two steps smaller; idle unpinned models evicted, in the core's eviction
 *            order (idle time / reload cost), until the bytes to free are covered.
 *   critical new loads refused (503 with guidance, not a load failure); idle models evicted as at
 *            high, pinned ones last and only when the unpinned ones are not enough; optionally
 *            (`cancelOnCritical`) the newest request in flight cancelled when even that is not enough.
 *   thermal  throttling: new loads get half the batch and one thread fewer.
 */

/** One reading of the monitor, as the core takes it. */
export interface PressureReport {
  level: PressureLevel;
  /** Bytes to free to get back under `medium` with the hysteresis margin (monitor excessBytes). */
  excessBytes: number;
  /** Thermal throttling visible now. */
  throttled: boolean;
  /** Why the level is what it is (shown in guidance and reasons). */
  reasons: readonly string[];
  /**
   * When the reading was taken, on the core's clock. A reading taken before the last runner
   * exit still counts the memory that exit returned, so it never evicts more.
   */
  sampledAt: number;
  /** Cancel the newest request in flight at critical when evicting is not enough. Defaults to false. */
  cancelOnCritical?: boolean;
}

/** What new loads must respect. The core plans and admits with it. */
export interface LoadPolicy {
  level: PressureLevel;
  /** Set at critical: refuse new loads (HTTP 503, Retry-After), not counted as a load failure. */
  refuse?: { message: string; guidance: string[]; retryAfterSeconds: number };
  /** Plan new loads this many steps smaller (KV type quantised or context halved per step). */
  shrinkSteps: number;
  /** Multiply the batch size of new loads by this (thermal). */
  batchScale: number;
  /** Threads to take off new loads (thermal), never below 1. */
  threadsLess: number;
  reasons: string[];
}

export const NORMAL_LOAD_POLICY: LoadPolicy = {
  level: 'low',
  shrinkSteps: 0,
  batchScale: 1,
  threadsLess: 0,
  reasons: [],
};

const LEVELS: readonly PressureLevel[] = ['low', 'medium', 'high', 'critical'];

export function levelRank(level: PressureLevel): number {
  return LEVELS.indexOf(level);
}

/** `(reason; reason)` or nothing, for messages. */
export function why(report: Pick<PressureReport, 'reasons'>): string {
  return report.reasons.length > 0 ? ` (${report.reasons.join('; ')})` : '';
}

/** The policy new loads follow under a report. */
export function loadPolicyFor(report: PressureReport): LoadPolicy {
  const { level } = report;
  const reasons: string[] = [];
  const policy: LoadPolicy = { ...NORMAL_LOAD_POLICY, level, reasons };
  if (level === 'medium') policy.shrinkSteps = 1;
  if (level === 'high') policy.shrinkSteps = 2;
  if (level !== 'low') reasons.push(`memory pressure ${level}${why(report)}`);
  if (report.throttled) {
    policy.batchScale = 0.5;
    policy.threadsLess = 1;
    reasons.push('CPU thermal throttling');
  }
  if (level === 'critical')
    policy.refuse = {
      message: `New models are not loaded while memory pressure is critical${why(report)}. Retry in a few seconds.`,
      guidance: [
        'unload models you do not need (headroom unload <name>)',
        'close other memory-hungry programs',
        'use a smaller model or context',
      ],
      retryAfterSeconds: 5,
    };
  return policy;
}

/** Whether two policies ask the same of new loads (their reasons aside). */
export function samePolicy(a: LoadPolicy, b: LoadPolicy): boolean {
  return (
    a.level === b.level &&
    (a.refuse === undefined) === (b.refuse === undefined) &&
    a.shrinkSteps === b.shrinkSteps &&
    a.batchScale === b.batchScale &&
    a.threadsLess === b.threadsLess
  );
}

/** "refused", "2 step(s) smaller, batch ×0.5", … or "as planned". */
export function describePolicy(p: LoadPolicy): string {
  const parts: string[] = [];
  if (p.refuse) parts.push('refused');
  if (p.shrinkSteps > 0) parts.push(`${p.shrinkSteps} step(s) smaller`);
  if (p.batchScale !== 1) parts.push(`batch ×${p.batchScale}`);
  if (p.threadsLess > 0) parts.push(`${p.threadsLess} thread(s) fewer`);
  return parts.join(', ') || 'as planned';
}

const KV_STEPS: readonly KvCacheType[] = ['f16', 'q8_0', 'q4_0'];

/**
 * A config made smaller / lighter as a policy says. Each shrink step quantises the KV cache one
 * type further when it may (f16 → q8_0 → q4_0: a smaller cache at a small cost in quality; only
 * with flash attention on, which llama.cpp needs for a quantised V cache, and not when the
 * request named its KV type), else halves the context (never below 512). Refusal is not applied
 * here: it is an admission decision.
 */
export function adjustLoad(
  config: RunnerConfig,
  policy: LoadPolicy,
  opts: { keepKv?: boolean } = {},
): RunnerConfig {
  const out = { ...config };
  for (let i = 0; i < policy.shrinkSteps; i++) {
    const k = KV_STEPS.indexOf(out.kvCacheValueType);
    if (!opts.keepKv && out.flashAttention && k >= 0 && k < KV_STEPS.length - 1) {
      out.kvCacheKeyType = KV_STEPS[k + 1]!;
      out.kvCacheValueType = KV_STEPS[k + 1]!;
    } else {
      out.contextSize = Math.max(Math.min(512, out.contextSize), Math.floor(out.contextSize / 2));
    }
  }
  if (policy.batchScale !== 1)
    out.batchSize = Math.max(
      Math.min(32, out.batchSize),
      Math.floor(out.batchSize * policy.batchScale),
    );
  if (policy.threadsLess > 0) out.threads = Math.max(1, out.threads - policy.threadsLess);
  return out;
}
