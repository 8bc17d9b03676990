/**
 * planLoad: the one entry the daemon and `headroom plan` use to plan a load. Pure and synchronous:
 * the bytes available (and, optionally, the machine) come in as parameters, measurements through a
 * lookup function.
 *
 * What it does, in order:
 * 1. Completes the request with defaults: the trained context (else `defaultContext`), one slot,
 *    batch 512, flash attention on, an f16 KV cache, no GPU layers, mmap on.
 * 2. Fit search (`fitConfig`) for `available.bytes`, within what `level` allows: the largest
 *    context up to the requested one, then the KV type, then the batch; GPU layers when
 *    `available.gpus` is given.
 * 3. Prefers measurement: when `measured(config)` knows the chosen config, its peak replaces the
 *    formula's total if it was taken with the context (nearly) full, and can only raise it
 *    otherwise (a peak taken earlier is a lower bound). If that no longer fits, the search runs
 *    once more with the budget lowered by the difference.
 * 4. Preflight of the chosen config (or, when nothing fits, of the requested one) against the
 *    machine: verdict, reasons, guidance and the alternatives that fit.
 * A request the fit had to reduce (a smaller context than explicitly asked for, a quantised KV cache
 * or a smaller batch) is a `warn` with the reason.
 */
import type { ModelSpec } from '../gguf/types.js';
import {
  fitConfig,
  targetContext,
  DEFAULT_BATCH,
  type OptimisationLevel,
  type Variant,
} from './fit.js';
import {
  FOOTPRINT_PROFILES,
  PlanError,
  footprintProfile,
  predictFootprint,
  validatePlanInput,
  type Footprint,
  type FootprintEngine,
  type FootprintOptions,
  type KvCacheType,
  type PlanConfig,
} from './footprint.js';
import {
  formatGB,
  preflight,
  type PreflightCause,
  type PreflightHardware,
  type PreflightResult,
  type Verdict,
} from './preflight.js';

/** What the caller asks for; every field is optional. */
export interface LoadRequest {
  /** Context per slot in tokens. Defaults to the trained context (else `defaultContext`). */
  contextSize?: number;
  /** KV cache type for keys and values. Left to the fit search (f16 first) when missing. */
  kv?: KvCacheType;
  /** Defaults to on. Must not be false with a quantised KV cache. */
  flashAttention?: boolean;
  /** Parallel slots. Defaults to 1. */
  parallel?: number;
  /** Left to the fit search (512, smaller at `aggressive`+) when missing. */
  batchSize?: number;
  /** Layers on GPU 0. When missing: as many as `available.gpus[0]` takes, else 0. */
  gpuLayers?: number;
  /** Defaults to true. */
  mmap?: boolean;
  /**
   * Tokens per sequence the engine evaluates in one prompt step (PlanConfig.promptChunk). Defaults
   * to the engine's profile (FootprintProfile.prompt): 64 for the embedded runner
   * (engines/embedded PROMPT_CHUNK_TOKENS), whole batches for llama-server.
   */
  promptChunk?: number;
  /**
   * PlanConfig.attentionCap. Defaults to the engine's cap (the embedded runner's
   * DEFAULT_ATTENTION_CAP; none for llama-server) when `promptChunk` is left to its default too; no
   * cap otherwise.
   */
  attentionCap?: number;
  /**
   * PlanConfig.promptTurns. Defaults to the engine's profile (true for the embedded runner, false
   * for llama-server) when `promptChunk` is left to its default too; false otherwise.
   */
  promptTurns?: boolean;
}

export interface PlanLoadInput {
  spec: ModelSpec;
  request?: LoadRequest;
  /**
   * The program that will run the model: its footprint profile prices the load
   * (FOOTPRINT_PROFILES). Defaults to 'embedded'.
   */
  engine?: FootprintEngine;
  /**
   * Bytes this load may take at its peak (the daemon: its budget left after planned evictions; the
   * CLI: min(budget, available memory, cgroup room)), and the free bytes of each GPU.
   */
  available: { bytes: number; gpus?: number[] };
  /** The machine, for the preflight's total-memory, available-memory and cgroup reasons. */
  hardware?: PreflightHardware;
  /** How far the fit may degrade. Defaults to 'basic'. */
  level?: OptimisationLevel;
  /** One slot, batch 128, mmap. Defaults to false. */
  lowMemory?: boolean;
  /** Smallest acceptable context. Defaults to 2048 (or the trained context when smaller). */
  minContext?: number;
  /** Context when neither the request nor the model gives one. Defaults to 4096. */
  defaultContext?: number;
  /** A measured footprint for a config of this file (MeasuredStore.lookup), if any. */
  measured?: (config: PlanConfig) => MeasuredPeak | undefined;
  /** Other quantisations of this model, for guidance. */
  variants?: readonly Variant[];
  /** Name of the model in messages. */
  modelName?: string;
  footprintOptions?: FootprintOptions;
}

/** The part of a stored measurement planLoad uses. */
export interface MeasuredPeak {
  peak: number;
  rssAnon: number;
  /** Share of the context in use when the peak was taken (0–1); unknown when missing. */
  contextFill?: number;
}

export type PlanCause = PreflightCause | 'reduced' | 'no-fit';

export interface LoadPlan {
  verdict: Verdict;
  /** One line per finding. */
  reasons: string[];
  /** What a person can do about them. */
  guidance: string[];
  causes: PlanCause[];
  /** The config to load; undefined when nothing the level allows fits (verdict `refuse`). */
  fit: PlanConfig | undefined;
  /** The config `predicted` is for: `fit`, else the requested config. */
  config: PlanConfig;
  /** Footprint of `config`; `total` (and `byKind.anonymous`) from measurement when `source` says so. */
  predicted: Footprint;
  /** Footprint by the formula alone (equals `predicted` when `source` is 'formula'). */
  formula: Footprint;
  source: 'formula' | 'measured';
  /** The request completed with defaults, and its footprint. */
  requested: { config: PlanConfig; footprint: Footprint };
  /** Configs (and variants) that fit when the plan is refused, best first. */
  alternatives: Array<{ config: PlanConfig; footprint: Footprint; variant?: string }>;
  /** Bytes the plan may take (available.bytes). */
  room: number;
  /** The verdict in one sentence, for HTTP errors and logs. */
  message: string;
}

/** The embedded runner's prompt chunk (engines/embedded PROMPT_CHUNK_TOKENS; not imported: planner is pure). */
export const DEFAULT_PROMPT_CHUNK: number = FOOTPRINT_PROFILES.embedded.prompt.chunk!;

/**
 * The embedded runner's cap on the attention scores of one prompt step with flash attention off
 * (engines/embedded ATTENTION_SCRATCH_CAP; not imported: planner is pure).
 */
export const DEFAULT_ATTENTION_CAP: number = FOOTPRINT_PROFILES.embedded.prompt.attentionCap!;

/** Fraction of the context in use above which a measured peak is the full-context peak. */
export const FULL_CONTEXT_FILL = 0.9;

/**
 * The request completed with the defaults (what the user would get with the room to spare); the
 * prompt step from `engine`'s profile.
 */
export function requestedConfig(
  spec: ModelSpec,
  request: LoadRequest = {},
  defaultContext?: number,
  engine: FootprintEngine = 'embedded',
): PlanConfig {
  const prompt = footprintProfile(engine).prompt;
  const kv = request.kv ?? 'f16';
  if (kv !== 'f16' && request.flashAttention === false)
    throw new PlanError(
      `a ${kv} KV cache needs flash attention: use flash attention on, or an f16 KV cache`,
      { param: 'flashAttention' },
    );
  const config: PlanConfig = {
    contextSize: targetContext(spec, request.contextSize, defaultContext),
    parallel: request.parallel ?? 1,
    batchSize: request.batchSize ?? DEFAULT_BATCH,
    flashAttention: kv !== 'f16' ? true : (request.flashAttention ?? true),
    kvCacheKeyType: kv,
    kvCacheValueType: kv,
    gpuLayers: request.gpuLayers ?? 0,
    mmap: request.mmap ?? true,
  };
  const chunk = request.promptChunk ?? prompt.chunk;
  if (chunk !== undefined) config.promptChunk = chunk;
  const engineDefaults = request.promptChunk === undefined;
  const cap = request.attentionCap ?? (engineDefaults ? prompt.attentionCap : undefined);
  if (cap !== undefined) config.attentionCap = cap;
  // The embedded runner lets prompt chunks of different slots take turns; llama-server does not.
  const turns = request.promptTurns ?? (engineDefaults && prompt.turns ? true : undefined);
  if (turns !== undefined) config.promptTurns = turns;
  validatePlanInput(spec, config);
  return config;
}

/** The formula footprint with a measurement applied (see the module comment, step 3). */
export function applyMeasurement(
  formula: Footprint,
  m: MeasuredPeak | undefined,
): { footprint: Footprint; source: 'formula' | 'measured' } {
  if (!m || !(m.peak > 0)) return { footprint: formula, source: 'formula' };
  const full = m.contextFill !== undefined && m.contextFill >= FULL_CONTEXT_FILL;
  const total = full ? m.peak : Math.max(m.peak, formula.total);
  if (total === formula.total) return { footprint: formula, source: 'formula' };
  const anonymous = full ? m.rssAnon : Math.max(m.rssAnon, formula.byKind.anonymous);
  const fileBacked = Math.max(0, total - anonymous);
  return {
    footprint: {
      ...formula,
      total,
      byKind: { anonymous: Math.min(anonymous, total), fileBacked },
      byDevice: { ...formula.byDevice, ram: total },
    },
    source: 'measured',
  };
}

function checkAvailable(available: PlanLoadInput['available']): void {
  if (!Number.isFinite(available.bytes) || available.bytes < 0)
    throw new PlanError(`available.bytes must be a non-negative number, got ${available.bytes}`, {
      param: 'available.bytes',
    });
  for (const g of available.gpus ?? [])
    if (!Number.isFinite(g) || g < 0)
      throw new PlanError(`available.gpus must hold non-negative numbers, got ${g}`, {
        param: 'available.gpus',
      });
}

/** Plans a load (see the module comment). Throws PlanError on an invalid spec or request. */
export function planLoad(input: PlanLoadInput): LoadPlan {
  const { spec, available } = input;
  const request = input.request ?? {};
  checkAvailable(available);
  const fpOpts =
    input.engine !== undefined
      ? { ...input.footprintOptions, engine: input.engine }
      : input.footprintOptions;
  const requested = requestedConfig(spec, request, input.defaultContext, fpOpts?.engine);
  const requestedFp = predictFootprint(spec, requested, fpOpts);
  const room = available.bytes;
  const gpuBudget = available.gpus?.[0];

  const search = (budgetBytes: number) =>
    fitConfig(spec, {
      budgetBytes,
      requested: {
        contextSize: requested.contextSize,
        parallel: requested.parallel,
        flashAttention: requested.flashAttention,
        mmap: requested.mmap,
        ...(request.kv !== undefined
          ? { kvCacheKeyType: request.kv, kvCacheValueType: request.kv }
          : {}),
        ...(request.batchSize !== undefined ? { batchSize: request.batchSize } : {}),
        ...(request.gpuLayers !== undefined || gpuBudget === undefined
          ? { gpuLayers: requested.gpuLayers }
          : {}),
        ...(requested.promptChunk !== undefined ? { promptChunk: requested.promptChunk } : {}),
        ...(requested.attentionCap !== undefined ? { attentionCap: requested.attentionCap } : {}),
        ...(requested.promptTurns !== undefined ? { promptTurns: requested.promptTurns } : {}),
      },
      minContext: input.minContext,
      level: input.level ?? 'basic',
      lowMemory: input.lowMemory,
      gpuBudgetBytes: request.gpuLayers === undefined ? gpuBudget : undefined,
      defaultContext: input.defaultContext,
      footprintOptions: fpOpts,
    });

  let fit = search(room);
  let measuredFit = fit ? applyMeasurement(fit.footprint, input.measured?.(fit.config)) : undefined;
  if (fit && measuredFit && measuredFit.footprint.total > room) {
    // The measurement says this config takes more than the formula: search again with the budget
    // lowered by the difference, and judge what that finds by the same rule.
    const excess = measuredFit.footprint.total - fit.footprint.total;
    fit = search(Math.max(0, room - excess));
    measuredFit = fit ? applyMeasurement(fit.footprint, input.measured?.(fit.config)) : undefined;
    if (fit && measuredFit && measuredFit.footprint.total > room)
      [fit, measuredFit] = [undefined, undefined];
  }

  const config = fit?.config ?? requested;
  const formula = fit?.footprint ?? requestedFp;
  const { footprint: predicted, source } =
    measuredFit ?? applyMeasurement(requestedFp, input.measured?.(requested));

  const pf: PreflightResult = preflight({
    spec,
    config,
    footprint: predicted,
    hardware: input.hardware ?? {
      totalRam: Number.POSITIVE_INFINITY,
      available: Number.POSITIVE_INFINITY,
      gpus: (available.gpus ?? []).map((free) => ({ free })),
    },
    budget: room,
    variants: input.variants,
    modelName: input.modelName,
    minContext: input.minContext,
    level: 'maximum',
    footprintOptions: fpOpts,
  });

  const reasons = [...pf.reasons];
  const guidance = [...pf.guidance];
  const causes: PlanCause[] = [...pf.causes];
  let verdict = pf.verdict;
  if (!fit && verdict !== 'refuse') {
    // Only when the room is not the binding limit (e.g. a minimum context above the trained one).
    verdict = 'refuse';
    causes.push('no-fit');
    reasons.push(
      `no config the "${input.level ?? 'basic'}" level allows fits ${formatGB(room)} at context ${Math.min(input.minContext ?? 2048, requested.contextSize)} or more`,
    );
  }
  if (fit) {
    const reduced = reductions(requested, fit.config, request);
    if (reduced.length > 0) {
      if (verdict === 'ok') verdict = 'warn';
      causes.push('reduced');
      reasons.push(
        `${requestedText(requested, request)} needs ${formatGB(requestedFp.total)}, more than the ${formatGB(room)} there is room for: planned with ${reduced.join(', ')}`,
      );
      guidance.push(`free ${formatGB(requestedFp.total - room)} to load it as requested`);
    }
  }
  const message =
    reasons.length === 0
      ? `fits: needs ${formatGB(predicted.total)} of ${formatGB(room)}`
      : guidance.length === 0
        ? reasons[0]!
        : `${reasons[0]}: ${guidance.map((g) => g.replace(/^or /, '')).join(', or ')}`;

  return {
    verdict,
    reasons,
    guidance,
    causes,
    fit: fit?.config,
    config,
    predicted,
    formula,
    source,
    requested: { config: requested, footprint: requestedFp },
    alternatives: pf.alternatives.map((a) => ({
      config: a.config,
      footprint: a.footprint,
      ...(a.variant !== undefined ? { variant: a.variant } : {}),
    })),
    room,
    message,
  };
}

/** What the fit gave up against an explicit request, as phrases ("context 8192", …). */
function reductions(requested: PlanConfig, fit: PlanConfig, request: LoadRequest): string[] {
  const out: string[] = [];
  if (request.contextSize !== undefined && fit.contextSize < requested.contextSize)
    out.push(`context ${fit.contextSize}`);
  if (fit.kvCacheKeyType !== requested.kvCacheKeyType) out.push(`a ${fit.kvCacheKeyType} KV cache`);
  if (fit.batchSize < requested.batchSize) out.push(`batch ${fit.batchSize}`);
  if (fit.parallel < requested.parallel) out.push(`${fit.parallel} slot(s)`);
  return out;
}

function requestedText(requested: PlanConfig, request: LoadRequest): string {
  const parts = [`context ${requested.contextSize}`];
  if (request.kv !== undefined) parts.push(`a ${request.kv} KV cache`);
  if (requested.parallel > 1) parts.push(`${requested.parallel} slots`);
  return parts.join(' with ');
}
