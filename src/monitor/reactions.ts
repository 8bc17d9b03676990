/**
 * Graded reactions to pressure, as a pure policy: (level, thermal, models, bytes to free) →
 * a load policy for new loads plus actions on loaded models. The effects (unloading, setting
 * the policy) are applied by daemon/reactions.ts.
 *
 *   low      nothing; new loads as planned.
 *   medium   new loads planned one step smaller (context or KV type); runners' prompt caches trimmed.
 *   high     new loads two steps smaller; idle models unloaded, least recently used first, until
 *            the bytes to free are covered (back under `medium` with its margin).
 *   critical new loads refused (503 with guidance); every idle model unloaded; pinned idle models
 *            too when that is still not enough; optionally the lowest-priority request in flight
 *            cancelled when even that is not enough.
 *   thermal  throttling: new loads get half the batch and one thread fewer.
 *
 * Never unloaded: a model with requests in flight (it is drained by the scheduler, never killed
 * here) and a model already stopping. Bytes of models already stopping count as freed, so a
 * reaction repeated on the next sample does not unload more than needed.
 */
import type { PressureLevel } from './pressure.js';

export interface ReactionModel {
  name: string;
  /** The scheduler's state: only 'ready' models are unloaded; 'draining'/'stopping' count as freeing. */
  state: string;
  inFlight: number;
  lastUsedAt?: number;
  pinned?: boolean;
  /** Higher is more important (for cancellation at critical). Defaults to 0. */
  priority?: number;
  /** Memory its runner holds now (RSS), bytes. */
  bytes: number;
}

export interface ReactionInput {
  level: PressureLevel;
  /** Thermal throttling visible now. */
  throttled: boolean;
  models: readonly ReactionModel[];
  /** Bytes to free to get back under `medium` (pressure.ts excessBytes). */
  excessBytes: number;
  /** Cancel the lowest-priority request in flight at critical when unloading is not enough. */
  cancelOnCritical?: boolean;
  /** Why the level is what it is (shown in guidance). */
  reasons?: readonly string[];
}

/** What new loads must respect. The scheduler applies it when it plans and admits a load. */
export interface LoadPolicy {
  level: PressureLevel;
  /** Set at critical: refuse new loads with this message (HTTP 503, Retry-After). */
  refuse?: { message: string; retryAfterSeconds: number };
  /** Plan new loads this many steps smaller (context halved or KV type quantised per step). */
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

export type ReactionAction =
  | { type: 'unload'; model: string; bytes: number; reason: string }
  | { type: 'trim-prompt-caches'; reason: string }
  | { type: 'cancel-request'; model: string; reason: string };

export interface ReactionPlan {
  policy: LoadPolicy;
  actions: ReactionAction[];
}

const MiB = 1024 * 1024;
const fmt = (b: number): string => `${Math.round(b / MiB)} MiB`;

function lru(a: ReactionModel, b: ReactionModel): number {
  return (a.lastUsedAt ?? 0) - (b.lastUsedAt ?? 0) || a.name.localeCompare(b.name);
}

export function decideReactions(input: ReactionInput): ReactionPlan {
  const { level } = input;
  const why = input.reasons?.length ? ` (${input.reasons.join('; ')})` : '';
  const reasons: string[] = [];
  const policy: LoadPolicy = { ...NORMAL_LOAD_POLICY, level, reasons };
  const actions: ReactionAction[] = [];

  if (level === 'medium') policy.shrinkSteps = 1;
  if (level === 'high') policy.shrinkSteps = 2;
  if (level !== 'low') reasons.push(`memory pressure ${level}${why}`);
  if (input.throttled) {
    policy.batchScale = 0.5;
    policy.threadsLess = 1;
    reasons.push('CPU thermal throttling');
  }
  if (level === 'medium' || level === 'high' || level === 'critical')
    actions.push({ type: 'trim-prompt-caches', reason: `pressure ${level}${why}` });

  if (level === 'high' || level === 'critical') {
    const pending = input.models
      .filter((m) => m.state === 'draining' || m.state === 'stopping')
      .reduce((n, m) => n + m.bytes, 0);
    let left = Math.max(0, input.excessBytes - pending);
    const idle = input.models.filter((m) => m.state === 'ready' && m.inFlight === 0);
    const unpinned = idle.filter((m) => !m.pinned).sort(lru);
    const pinned = idle.filter((m) => m.pinned).sort(lru);
    const unload = (m: ReactionModel, reason: string): void => {
      actions.push({ type: 'unload', model: m.name, bytes: m.bytes, reason });
      left -= m.bytes;
    };
    if (level === 'high') {
      for (const m of unpinned) {
        if (left <= 0) break;
        unload(m, `pressure high${why}: idle, least recently used; ${fmt(left)} to free`);
      }
    } else {
      // Critical: every idle model goes, whatever the count says (the count lags reality).
      for (const m of unpinned) unload(m, `pressure critical${why}: every idle model is unloaded`);
      for (const m of pinned) {
        if (left <= 0) break;
        unload(m, `pressure critical${why}: pinned but idle, and unpinned models were not enough`);
      }
      if (input.cancelOnCritical && left > 0) {
        const busy = input.models
          .filter((m) => m.state === 'ready' && m.inFlight > 0)
          .sort((a, b) => (a.priority ?? 0) - (b.priority ?? 0) || b.bytes - a.bytes);
        const victim = busy[0];
        if (victim)
          actions.push({
            type: 'cancel-request',
            model: victim.name,
            reason: `pressure critical${why}: idle models were not enough; lowest-priority request cancelled`,
          });
      }
    }
  }

  if (level === 'critical') {
    policy.refuse = {
      message:
        `New models are not loaded while memory pressure is critical${why}. ` +
        'Retry in a few seconds; to make room for good, unload models you do not need (headroom unload <name>), ' +
        'close other memory-hungry programs, or use a smaller model or context.',
      retryAfterSeconds: 5,
    };
  }
  return { policy, actions };
}

/** The tunables of a load a policy adjusts (a subset of the engines' RunnerConfig). */
export interface AdjustableLoad {
  contextSize: number;
  batchSize: number;
  threads: number;
  flashAttention: boolean;
  kvCacheKeyType: KvType;
  kvCacheValueType: KvType;
}

type KvType = 'f16' | 'q8_0' | 'q4_0';
const KV_STEPS: readonly KvType[] = ['f16', 'q8_0', 'q4_0'];

/**
 * Applies a policy's shrink and thermal settings to a load's config. Each shrink step quantises
 * the KV cache one type further when it can (f16 → q8_0 → q4_0, a smaller cache at a small cost
 * in quality; only with flash attention on, as llama.cpp needs it for a quantised V cache), else
 * halves the context (never below 512). Refusal is not applied here: it is an
 * admission decision (see LoadPolicy.refuse).
 */
export function adjustLoad<T extends AdjustableLoad>(config: T, policy: LoadPolicy): T {
  const out = { ...config };
  for (let i = 0; i < policy.shrinkSteps; i++) {
    const k = KV_STEPS.indexOf(out.kvCacheValueType);
    if (out.flashAttention && k >= 0 && k < KV_STEPS.length - 1) {
      out.kvCacheKeyType = KV_STEPS[k + 1]!;
      out.kvCacheValueType = KV_STEPS[k + 1]!;
    } else {
      out.contextSize = Math.max(512, Math.floor(out.contextSize / 2));
    }
  }
  if (policy.batchScale !== 1)
    out.batchSize = Math.max(32, Math.floor(out.batchSize * policy.batchScale));
  if (policy.threadsLess > 0) out.threads = Math.max(1, out.threads - policy.threadsLess);
  return out;
}
