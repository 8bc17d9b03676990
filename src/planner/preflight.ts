/**
 * Preflight: may this config of this model be loaded on this machine now? Pure: the hardware comes
 * in as a snapshot. The verdict judges the given config (normally the fit search's choice):
 * `refuse` when it does not fit the machine, the memory available, the cgroup limit, the model
 * budget or a GPU; `warn` when it fits but tightly or below the recommended machine size; `ok`
 * otherwise. Every reason comes with guidance a person can act on, and `alternatives` lists configs
 * (and variants) that do fit.
 */
import type { HardwareSnapshot } from '../monitor/index.js';
import type { ModelSpec } from '../gguf/types.js';
import { fitConfig, pickVariant, type Fit, type OptimisationLevel, type Variant } from './fit.js';
import {
  predictFootprint,
  type Footprint,
  type FootprintOptions,
  type PlanConfig,
} from './footprint.js';

export interface PreflightHardware {
  totalRam: number;
  /** Bytes available without swapping (MemAvailable). */
  available: number;
  /** The daemon's cgroup memory limit, when it has one. */
  cgroupLimit?: number;
  /** What the cgroup holds now (its working set); 0 when not given. */
  cgroupUsage?: number;
  /** Free bytes per GPU, in device order. */
  gpus: Array<{ free: number; total?: number; name?: string }>;
}

export interface PreflightInput {
  spec: ModelSpec;
  config: PlanConfig;
  /** The prediction for `config`; computed when missing. */
  footprint?: Footprint;
  hardware: PreflightHardware;
  /** Bytes of the model budget this load may take (after evictions); unlimited when missing. */
  budget?: number;
  /** Other quantisations of the same model, for guidance. */
  variants?: readonly Variant[];
  /** Name shown for this model in messages. */
  modelName?: string;
  /** Smallest acceptable context for alternatives. Defaults to 2048. */
  minContext?: number;
  /** How far alternatives may degrade. Defaults to 'maximum' (guidance shows every option). */
  level?: OptimisationLevel;
  footprintOptions?: FootprintOptions;
}

export type Verdict = 'ok' | 'warn' | 'refuse';

export type PreflightCause =
  | 'total-ram-minimum'
  | 'total-ram-recommended'
  | 'available'
  | 'cgroup'
  | 'budget'
  | 'gpu'
  | 'tight';

export interface PreflightResult {
  verdict: Verdict;
  /** One line per finding, e.g. "needs 9.1 GB, 5.2 GB available". */
  reasons: string[];
  /** What to do, e.g. "use context 8192, which fits". */
  guidance: string[];
  /** The causes behind `reasons`, in the same order. */
  causes: PreflightCause[];
  /** Configs that fit the room there is (best first), and the best variant that fits. */
  alternatives: Array<Fit & { variant?: string }>;
  /** Bytes the config needs (footprint.total) and bytes there is room for. */
  needs: number;
  room: number;
  /** reasons[0] and the guidance in one sentence, for HTTP errors and the CLI. */
  message: string;
}

const GiB = 1024 ** 3;
/** RAM the OS and the daemon need beside a model: below footprint + this, the machine is too small. */
export const OS_MINIMUM_RESERVE = 1 * GiB;
/** Recommended RAM beside a model. */
export const OS_RECOMMENDED_RESERVE = 2 * GiB;
/** A config taking more than this share of the room fits only tightly (warn). */
export const TIGHT_FRACTION = 0.9;

/** "9.1 GB" (decimal gigabytes, one decimal; MB below 1 GB), the unit people read on their machines. */
export function formatGB(bytes: number): string {
  if (bytes < 1e9) return `${Math.round(bytes / 1e6)} MB`;
  return `${(bytes / 1e9).toFixed(1)} GB`;
}

/** The preflight hardware of a monitor snapshot (the cgroup's working set counts as used). */
export function hardwareFromSnapshot(s: HardwareSnapshot): PreflightHardware {
  return {
    totalRam: s.totalRam,
    available: s.available,
    cgroupLimit: s.cgroup?.limit,
    cgroupUsage: s.cgroup?.workingSet,
    gpus: s.gpus
      .filter((g) => !g.unified)
      .map((g) => ({ free: g.free, total: g.total, name: g.name })),
  };
}

/** The smallest config the model could ever run with: context 2048 (or trained), one slot, batch 128, q4_0 KV. */
export function minimumConfig(spec: ModelSpec, minContext = 2048): PlanConfig {
  const ctx = spec.contextLength > 0 ? Math.min(minContext, spec.contextLength) : minContext;
  return {
    contextSize: ctx,
    parallel: 1,
    batchSize: 128,
    flashAttention: true,
    kvCacheKeyType: 'q4_0',
    kvCacheValueType: 'q4_0',
    gpuLayers: 0,
    mmap: true,
  };
}

export function preflight(input: PreflightInput): PreflightResult {
  const { spec, config, hardware } = input;
  const fpOpts = input.footprintOptions;
  const fp = input.footprint ?? predictFootprint(spec, config, fpOpts);
  const needs = fp.total;
  const name = input.modelName ?? spec.name ?? 'the model';
  const reasons: string[] = [];
  const causes: PreflightCause[] = [];
  const guidance: string[] = [];
  let refuse = false;
  let warn = false;

  const minimum =
    predictFootprint(spec, minimumConfig(spec, input.minContext), fpOpts).total +
    OS_MINIMUM_RESERVE;
  const recommended = needs + OS_RECOMMENDED_RESERVE;
  if (hardware.totalRam < minimum) {
    refuse = true;
    causes.push('total-ram-minimum');
    reasons.push(
      `${name} needs a machine with at least ${formatGB(minimum)} of memory, even at its smallest settings; this one has ${formatGB(hardware.totalRam)}`,
    );
    guidance.push('use a smaller model or a smaller quantisation of it');
  } else if (hardware.totalRam < recommended) {
    warn = true;
    causes.push('total-ram-recommended');
    reasons.push(
      `${formatGB(recommended)} of memory is recommended for ${name} with these settings; this machine has ${formatGB(hardware.totalRam)}`,
    );
  }

  // The room: the smallest of what is free, what the cgroup allows and what the budget allows.
  const cgroupRoom =
    hardware.cgroupLimit !== undefined
      ? Math.max(0, hardware.cgroupLimit - (hardware.cgroupUsage ?? 0))
      : Infinity;
  const budgetRoom = input.budget ?? Infinity;
  const room = Math.min(hardware.available, cgroupRoom, budgetRoom);
  const machineFits = !causes.includes('total-ram-minimum');
  if (needs > hardware.available) {
    refuse = true;
    causes.push('available');
    reasons.push(`needs ${formatGB(needs)}, ${formatGB(hardware.available)} available`);
    if (machineFits && needs <= hardware.totalRam - OS_MINIMUM_RESERVE)
      guidance.push(`close other applications to free ${formatGB(needs - hardware.available)}`);
  }
  if (needs > cgroupRoom) {
    refuse = true;
    causes.push('cgroup');
    reasons.push(
      `needs ${formatGB(needs)}, the memory limit of headroom's cgroup leaves ${formatGB(cgroupRoom)} (limit ${formatGB(hardware.cgroupLimit!)}, ${formatGB(hardware.cgroupUsage ?? 0)} in use)`,
    );
    guidance.push(
      'raise the container or service memory limit (docker --memory, systemd MemoryMax)',
    );
  }
  if (needs > budgetRoom) {
    refuse = true;
    causes.push('budget');
    reasons.push(`needs ${formatGB(needs)}, the model budget leaves ${formatGB(budgetRoom)}`);
    guidance.push('raise the budget (config "budget" or --budget), or unload other models');
  }

  // GPUs: what is offloaded must fit each device's free memory.
  fp.byDevice.gpus.forEach((bytes, i) => {
    const gpu = hardware.gpus[i];
    const free = gpu?.free ?? 0;
    if (bytes <= free) return;
    refuse = true;
    causes.push('gpu');
    reasons.push(
      gpu
        ? `needs ${formatGB(bytes)} on GPU ${i}${gpu.name ? ` (${gpu.name})` : ''}, ${formatGB(free)} free`
        : `offloads ${formatGB(bytes)} to GPU ${i}, which this machine does not have`,
    );
    const layers = gpuLayersThatFit(spec, config, free, fpOpts);
    guidance.push(
      layers > 0
        ? `offload fewer layers: gpuLayers ${layers} fits`
        : 'run on the CPU (gpuLayers 0)',
    );
  });

  if (!refuse && needs > TIGHT_FRACTION * room && Number.isFinite(room)) {
    warn = true;
    causes.push('tight');
    reasons.push(
      `needs ${formatGB(needs)} of the ${formatGB(room)} there is room for: little is left for other programs`,
    );
  }

  // Alternatives that fit the room (only when the machine is large enough at all).
  const alternatives: PreflightResult['alternatives'] = [];
  if (refuse && machineFits && Number.isFinite(room)) {
    const requested: Partial<PlanConfig> = {
      parallel: config.parallel,
      mmap: config.mmap,
      gpuLayers: 0,
    };
    const seen = new Set<string>();
    for (const level of levelsUpTo(input.level ?? 'maximum')) {
      const fit = fitConfig(spec, {
        budgetBytes: room,
        requested: { ...requested, contextSize: config.contextSize },
        minContext: input.minContext,
        level,
        footprintOptions: fpOpts,
      });
      if (!fit) continue;
      const key = `${fit.config.contextSize}/${fit.config.kvCacheKeyType}/${fit.config.batchSize}`;
      if (seen.has(key)) continue;
      seen.add(key);
      alternatives.push(fit);
      const kv =
        fit.config.kvCacheKeyType === 'f16' ? '' : ` with a ${fit.config.kvCacheKeyType} KV cache`;
      guidance.push(`use context ${fit.config.contextSize}${kv}, which fits`);
    }
    const others = (input.variants ?? []).filter((v) => v.spec.tensorBytes < spec.tensorBytes);
    if (others.length > 0) {
      const v = pickVariant(others, {
        budgetBytes: room,
        requested: { ...requested, contextSize: config.contextSize },
        minContext: input.minContext,
        level: input.level ?? 'maximum',
        footprintOptions: fpOpts,
      });
      if (v) {
        alternatives.push({ config: v.config, footprint: v.footprint, variant: v.variant.name });
        guidance.push(`or the ${v.variant.name} variant`);
      }
    }
    if (alternatives.length === 0 && !causes.includes('total-ram-minimum'))
      guidance.push(
        'no smaller setting of this model fits now: free memory or use a smaller model',
      );
  }

  const verdict: Verdict = refuse ? 'refuse' : warn ? 'warn' : 'ok';
  const message =
    reasons.length === 0
      ? `fits: needs ${formatGB(needs)}`
      : guidance.length === 0
        ? reasons[0]!
        : `${reasons[0]}: ${guidance.map((g) => g.replace(/^or /, '')).join(', or ')}`;
  return { verdict, reasons, guidance, causes, alternatives, needs, room, message };
}

function levelsUpTo(level: OptimisationLevel): OptimisationLevel[] {
  return level === 'basic'
    ? ['basic']
    : level === 'aggressive'
      ? ['basic', 'aggressive']
      : ['basic', 'aggressive', 'maximum'];
}

function gpuLayersThatFit(
  spec: ModelSpec,
  config: PlanConfig,
  free: number,
  opts: FootprintOptions | undefined,
): number {
  for (let n = Math.min(config.gpuLayers, spec.layers + 1) - 1; n > 0; n--) {
    if ((predictFootprint(spec, { ...config, gpuLayers: n }, opts).byDevice.gpus[0] ?? 0) <= free)
      return n;
  }
  return 0;
}
