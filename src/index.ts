/**
 * The library entry: `import { createHeadroom } from 'headroom'`. docs/LIBRARY.md shows it in use.
 *
 * `createHeadroom()` gives the core without HTTP (catalog, planner, scheduler, runners) with typed
 * events and views; `Daemon.start()` the same core behind the HTTP API.
 */
export {
  createHeadroom,
  Headroom,
  Daemon,
  VERSION,
  type HeadroomOptions,
  type DaemonOptions,
} from './main.js';
export {
  HeadroomEvents,
  type HeadroomEventMap,
  type LoadEvent,
  type UnloadEvent,
  type MemoryAllocation,
  type MemoryBuffers,
  type ModelResourceMetrics,
  type SystemResources,
  type ResourceLimits,
  type PressureConfig,
} from './daemon/library.js';
export type {
  AcquireOptions,
  Lease,
  LeaseTiming,
  ModelStatus,
  ManagerEvent,
  ResourcesView,
} from './scheduler/model-manager.js';
export type { StopReason } from './scheduler/core-types.js';
export type { ModelState } from './scheduler/types.js';
export type { RunnerConfig, RunnerStats, KvCacheType } from './engines/types.js';
export type { ModelSpec } from './gguf/types.js';
export { readModelSpec } from './gguf/index.js';
export { forgeModel, type ForgeOptions, type ForgeResult } from './gguf/forge.js';
export {
  planLoad,
  type Footprint,
  type LoadPlan,
  type LoadRequest,
  type PlanConfig,
} from './planner/index.js';
export type { PressureLevel } from './monitor/pressure.js';
export type { Alert } from './monitor/trends.js';
export type { FeedEvent, LevelChange, MonitorSample } from './monitor/feed.js';
export {
  loadConfig,
  normaliseConfig,
  configSchema,
  ConfigError,
  type Config,
  type ConfigInput,
} from './config/index.js';
export { HeadroomError } from './lib/errors.js';
export { createLogger, type Logger } from './lib/logger.js';
export { ERROR_CODES, type ErrorCode } from './lib/error-codes.js';
