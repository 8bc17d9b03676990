/** The memory planner: footprint model, fit search, presets and preflight. Pure: no I/O. */
export {
  FOOTPRINT_CONSTANTS,
  PlanError,
  bytesPerWeight,
  contextCells,
  dominantWeightType,
  kvBytesPerCell,
  predictFootprint,
  validatePlanInput,
  type Footprint,
  type FootprintOptions,
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
