/**
 * The fit search: the best config of a model for the bytes available to it. Pure and synchronous;
 * each candidate is priced by `predictFootprint`, which grows with the context, so the largest
 * context per candidate is found by bisection.
 *
 * Order of preference (what is given up first is last here):
 * 1. the largest context, up to the requested size (else the trained size) and at least `minContext`;
 * 2. among configs reaching that context, an f16 KV cache, then q8_0, then q4_0 (both with flash
 *    attention on);
 * 3. then the largest batch.
 * Optimisation levels bound the degradation: `basic` only shrinks the context; `aggressive` may
 * also quantise the KV cache to q8_0 and shrink the batch (down to 128); `maximum` may use q4_0.
 * An explicitly requested KV type or batch size is kept as given. Parallel slots are never traded
 * for context (that would make a larger budget yield a smaller context); `lowMemory` asks for one
 * slot, a batch of 128 and memory-mapped weights from the start.
 */
import type { ModelSpec } from '../gguf/types.js';
import {
  PlanError,
  predictFootprint,
  type Footprint,
  type FootprintEngine,
  type FootprintOptions,
  type KvCacheType,
  type PlanConfig,
} from './footprint.js';

export type OptimisationLevel = 'basic' | 'aggressive' | 'maximum';

export interface FitRequest {
  /** Bytes the runner may hold at its peak (compared with `Footprint.total`). */
  budgetBytes: number;
  /** What the user asked for; missing fields are chosen by the search. */
  requested?: Partial<PlanConfig>;
  /** Smallest acceptable context. Defaults to 2048 (or the trained context when smaller). */
  minContext?: number;
  /** Defaults to 'basic'. */
  level?: OptimisationLevel;
  /** One slot, batch 128, mmap on. Defaults to false. */
  lowMemory?: boolean;
  /** Free bytes of GPU 0: offload as many layers as fit (when `requested.gpuLayers` is not given). */
  gpuBudgetBytes?: number;
  /** Context used when neither the request nor the model gives one. Defaults to 4096. */
  defaultContext?: number;
  /** The engine whose profile prices the candidates (FootprintOptions.engine). Defaults to 'embedded'. */
  engine?: FootprintEngine;
  footprintOptions?: FootprintOptions;
}

export interface Fit {
  config: PlanConfig;
  footprint: Footprint;
}

export const DEFAULT_MIN_CONTEXT = 2048;
export const DEFAULT_BATCH = 512;
const MIN_BATCH = 128;
const STEP = 256;

/** The context the search aims at: the request, else the trained size, else the default. */
export function targetContext(
  spec: ModelSpec,
  requested: number | undefined,
  defaultContext = 4096,
): number {
  if (requested !== undefined) return requested;
  return spec.contextLength > 0 ? spec.contextLength : defaultContext;
}

function kvChoices(
  level: OptimisationLevel,
  requested: Partial<PlanConfig>,
): Array<[KvCacheType, KvCacheType]> {
  if (requested.kvCacheKeyType !== undefined || requested.kvCacheValueType !== undefined) {
    const k = requested.kvCacheKeyType ?? requested.kvCacheValueType ?? 'f16';
    const v = requested.kvCacheValueType ?? requested.kvCacheKeyType ?? 'f16';
    return [[k, v]];
  }
  const out: Array<[KvCacheType, KvCacheType]> = [['f16', 'f16']];
  if (level !== 'basic') out.push(['q8_0', 'q8_0']);
  if (level === 'maximum') out.push(['q4_0', 'q4_0']);
  return out;
}

function batchChoices(
  level: OptimisationLevel,
  requested: Partial<PlanConfig>,
  lowMemory: boolean,
): number[] {
  if (requested.batchSize !== undefined) return [requested.batchSize];
  const first = lowMemory ? MIN_BATCH : DEFAULT_BATCH;
  if (level === 'basic') return [first];
  const out = [first];
  for (let b = first / 2; b >= MIN_BATCH; b /= 2) out.push(b);
  return out;
}

function checkRequest(req: FitRequest): void {
  if (!Number.isFinite(req.budgetBytes) || req.budgetBytes < 0)
    throw new PlanError(`budgetBytes must be a non-negative number, got ${req.budgetBytes}`, {
      param: 'budgetBytes',
    });
  if (
    req.minContext !== undefined &&
    (!Number.isSafeInteger(req.minContext) || req.minContext < 1)
  ) {
    throw new PlanError(`minContext must be a positive integer, got ${req.minContext}`, {
      param: 'minContext',
    });
  }
  if (
    req.level !== undefined &&
    req.level !== 'basic' &&
    req.level !== 'aggressive' &&
    req.level !== 'maximum'
  ) {
    throw new PlanError(`level must be basic, aggressive or maximum, got ${String(req.level)}`, {
      param: 'level',
    });
  }
}

/**
 * The best config that fits `budgetBytes`, or undefined when none of the configs the level allows
 * fits at the minimum context. Throws PlanError on an invalid request.
 */
export function fitConfig(spec: ModelSpec, req: FitRequest): Fit | undefined {
  checkRequest(req);
  const requested = req.requested ?? {};
  const level = req.level ?? 'basic';
  const lowMemory = req.lowMemory ?? false;
  const target = targetContext(spec, requested.contextSize, req.defaultContext);
  const min = Math.min(req.minContext ?? DEFAULT_MIN_CONTEXT, target);
  const parallel = lowMemory ? 1 : (requested.parallel ?? 1);
  const base = {
    parallel,
    mmap: lowMemory ? true : (requested.mmap ?? true),
    ubatchSize: requested.ubatchSize,
    promptChunk: requested.promptChunk,
    ...(requested.attentionCap !== undefined ? { attentionCap: requested.attentionCap } : {}),
    ...(requested.promptTurns !== undefined ? { promptTurns: requested.promptTurns } : {}),
    gpuLayers: requested.gpuLayers ?? 0,
  };
  const fpOpts =
    req.engine !== undefined
      ? { ...req.footprintOptions, engine: req.engine }
      : req.footprintOptions;
  const fp = (c: PlanConfig): Footprint => predictFootprint(spec, c, fpOpts);

  let best: Fit | undefined;
  for (const [k, v] of kvChoices(level, requested)) {
    const quantisedV = v !== 'f16';
    const flashAttention = quantisedV ? true : (requested.flashAttention ?? true);
    for (const batchSize of batchChoices(level, requested, lowMemory)) {
      const make = (contextSize: number): PlanConfig => ({
        ...base,
        contextSize,
        batchSize,
        flashAttention,
        kvCacheKeyType: k,
        kvCacheValueType: v,
      });
      const fits = (ctx: number): Footprint | undefined => {
        const f = fp(make(ctx));
        return f.total <= req.budgetBytes ? f : undefined;
      };
      const ctx = largestFitting(min, target, fits);
      if (ctx === undefined) continue;
      // Strictly larger only: earlier candidates (f16, larger batch) win ties.
      if (!best || ctx > best.config.contextSize)
        best = { config: make(ctx), footprint: fits(ctx)! };
      if (best.config.contextSize === target) break;
    }
    if (best?.config.contextSize === target) break;
  }
  if (best && req.gpuBudgetBytes !== undefined && requested.gpuLayers === undefined)
    best = withGpuLayers(spec, best, req, fp);
  return best;
}

/** The largest context c in [min, target] with fits(c), trying target, then multiples of 256 below it. */
function largestFitting(
  min: number,
  target: number,
  fits: (ctx: number) => unknown,
): number | undefined {
  if (fits(target)) return target;
  if (!fits(min)) return undefined;
  // Invariant: fits(lo); candidates are multiples of STEP in (lo, target).
  let lo = min;
  let hiStep = Math.ceil(target / STEP) - 1; // largest multiple index below target
  let loStep = Math.floor(min / STEP) + 1;
  while (loStep <= hiStep) {
    const mid = (loStep + hiStep) >> 1;
    if (fits(mid * STEP)) {
      lo = mid * STEP;
      loStep = mid + 1;
    } else {
      hiStep = mid - 1;
    }
  }
  return lo;
}

/** Offloads as many layers as GPU 0's budget takes (RAM use only falls as layers move). */
function withGpuLayers(
  spec: ModelSpec,
  fit: Fit,
  req: FitRequest,
  fp: (c: PlanConfig) => Footprint,
): Fit {
  const gpuBudget = req.gpuBudgetBytes ?? 0;
  for (let layers = spec.layers + 1; layers > 0; layers--) {
    const config = { ...fit.config, gpuLayers: layers };
    const footprint = fp(config);
    if ((footprint.byDevice.gpus[0] ?? 0) <= gpuBudget && footprint.total <= req.budgetBytes)
      return { config, footprint };
  }
  return fit;
}

export interface Variant {
  /** A display name, e.g. the file name or its quantisation ("Q8_0"). */
  name: string;
  spec: ModelSpec;
}

export interface VariantFit extends Fit {
  variant: Variant;
}

/**
 * The best quantisation variant that fits: the highest precision (bytes per weight) whose fit at
 * the minimum context succeeds; its config is then the full fit search at that precision.
 * Undefined when no variant fits.
 */
export function pickVariant(variants: readonly Variant[], req: FitRequest): VariantFit | undefined {
  const ordered = [...variants].sort((a, b) => precision(b.spec) - precision(a.spec));
  for (const variant of ordered) {
    const fit = fitConfig(variant.spec, req);
    if (fit) return { ...fit, variant };
  }
  return undefined;
}

function precision(spec: ModelSpec): number {
  return spec.parameterCount > 0 ? spec.tensorBytes / spec.parameterCount : spec.tensorBytes;
}
