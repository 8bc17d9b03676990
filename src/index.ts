/** The library entry: `import { createHeadroom } from 'headroom'`. */
export {
  createHeadroom,
  Headroom,
  Daemon,
  VERSION,
  type HeadroomOptions,
  type DaemonOptions,
} from './main.js';
export type { Lease, ModelStatus, ManagerEvent } from './scheduler/model-manager.js';
export type { RunnerConfig, RunnerStats, KvCacheType } from './engines/types.js';
export type { ModelSpec } from './gguf/types.js';
export { loadConfig, normaliseConfig, type Config, type ConfigInput } from './config/index.js';
export { HeadroomError } from './lib/errors.js';
