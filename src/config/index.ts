export {
  configSchema,
  type ConfigInput,
  type ParsedConfig,
  type KvCacheTypeName,
} from './schema.js';
export { loadConfig, normaliseConfig, ConfigError, formatIssues, type Config } from './load.js';
export { parseByteSize, parseDuration, formatBytes } from './units.js';
export { resolveHome, homeLayout, type HomeLayout } from './home.js';
