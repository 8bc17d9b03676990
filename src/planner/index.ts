/**
 * The memory planner: footprint model, fit search, presets, preflight, and the measured store.
 * Pure (no I/O) except `MeasuredStore` and `fileIdentity` (store.ts).
 *
 * The high-level entry, for the daemon and `headroom plan` alike:
 *
 *   planLoad({ spec, engine?: 'embedded' | 'llama-server', request: { contextSize?, kv?,
 *              flashAttention?, parallel?, batchSize?, gpuLayers?, mmap?, promptChunk? },
 *              available: { bytes, gpus? }, hardware?, level?, lowMemory?, minContext?,
 *              measured?: (config) => store.lookup({ file, config }), variants?, modelName? })
 *     → { verdict, reasons, guidance, causes, fit (PlanConfig | undefined), config, predicted
 *         (Footprint, measured when known), formula, source, requested, alternatives, room, message }
 *
 * After a load, and again at the runner's peak, record what it measured:
 *
 *   const store = await MeasuredStore.create(path.join(home, 'state', 'footprints.json'));
 *   await store.record({ file: await fileIdentity(modelPath), config: runnerConfig },
 *                      { rss, rssAnon, peak, loadMs, contextFill });
 *
 * The lower-level pieces (predictFootprint, fitConfig, pickVariant, preflight, presets) stay
 * exported for callers that need one step only.
 */
export {
  FOOTPRINT_CONSTANTS,
  FOOTPRINT_ENGINES,
  FOOTPRINT_PROFILES,
  PlanError,
  bytesPerWeight,
  contextCells,
  dominantWeightType,
  footprintProfile,
  kvBytesPerCell,
  predictFootprint,
  validatePlanInput,
  type Footprint,
  type FootprintEngine,
  type FootprintOptions,
  type FootprintProfile,
  type FootprintTerms,
  type KvCacheType,
  type PlanConfig,
} from './footprint.js';
export {
  DEFAULT_BATCH,
  DEFAULT_MIN_CONTEXT,
  fitConfig,
  pickVariant,
  targetContext,
  type Fit,
  type FitRequest,
  type OptimisationLevel,
  type Variant,
  type VariantFit,
} from './fit.js';
export {
  MEMORY_PRESETS,
  defaultBudget,
  presetFor,
  type MemoryClass,
  type MemoryPreset,
} from './presets.js';
export {
  OS_MINIMUM_RESERVE,
  OS_RECOMMENDED_RESERVE,
  TIGHT_FRACTION,
  formatGB,
  hardwareFromSnapshot,
  minimumConfig,
  preflight,
  type PreflightCause,
  type PreflightHardware,
  type PreflightInput,
  type PreflightResult,
  type Verdict,
} from './preflight.js';
export {
  DEFAULT_ATTENTION_CAP,
  DEFAULT_PROMPT_CHUNK,
  FULL_CONTEXT_FILL,
  applyMeasurement,
  planLoad,
  requestedConfig,
  type LoadPlan,
  type LoadRequest,
  type MeasuredPeak,
  type PlanCause,
  type PlanLoadInput,
} from './plan.js';
export {
  MeasuredStore,
  StoreError,
  fileIdentity,
  measurementKey,
  type FileIdentity,
  type MeasuredConfig,
  type Measurement,
  type MeasurementKey,
  type StoreOptions,
  type StoredMeasurement,
} from './store.js';
