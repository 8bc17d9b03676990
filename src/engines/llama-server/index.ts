/** llama-server as an engine: where its binary comes from (resolution) and how it is built. */
export {
  resolveLlamaServer,
  binaryVersion,
  findExecutable,
  type LlamaServerBinary,
  type LlamaServerUnavailable,
  type LlamaServerResolution,
  type LlamaServerObtained,
  type ResolveOptions,
} from './binary.js';
export {
  buildLlamaServer,
  detectBackend,
  readBuild,
  readFailure,
  type BuildEvent,
  type BuildOptions,
  type BuildResult,
} from './builder.js';
export { engineCacheDir, llamaServerCacheDir, buildDir, buildLayout } from './source.js';
export type { Backend, BuildHow, BuildManifest, BuildFailure } from './build.js';
