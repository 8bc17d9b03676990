import type { RunnerConfig } from '../../src/engines/types.js';
import { ModelManager, type ModelManagerOptions } from '../../src/scheduler/model-manager.js';
import type { ModelEntry } from '../../src/scheduler/types.js';
import type { ServerCore } from '../../src/server/core.js';

/** A small runner config for in-process server tests (nothing is loaded with it). */
export const TEST_RUNNER_DEFAULTS: Omit<RunnerConfig, 'modelPath'> = {
  contextSize: 512,
  parallel: 1,
  threads: 1,
  batchSize: 64,
  flashAttention: true,
  kvCacheKeyType: 'f16',
  kvCacheValueType: 'f16',
  mmap: true,
  gpuLayers: 0,
};

/**
 * A ServerCore over a real ModelManager for the in-process app (fastify inject): `models` name
 * the catalog's entries (`/models/NAME.gguf`), loads go to `startRunner` (they fail by default),
 * and nothing reads a model file or a process.
 */
export function testServerCore(
  opts: {
    models?: string[];
    startRunner?: ModelManagerOptions['startRunner'];
    core?: Partial<ServerCore>;
  } = {},
): ServerCore {
  const catalog = new Map<string, ModelEntry>(
    (opts.models ?? []).map((name) => [
      name,
      { name, path: `/models/${name}.gguf`, overrides: {} },
    ]),
  );
  const manager = new ModelManager({
    catalog: () => catalog,
    startRunner: opts.startRunner ?? (() => Promise.reject(new Error('no runner in this test'))),
    stopGraceMs: 10,
    defaults: TEST_RUNNER_DEFAULTS,
  });
  return {
    version: 'test',
    startedAt: Date.now(),
    manager,
    processMemory: async () => undefined,
    logTail: async () => '',
    modelFile: async () => {
      throw new Error('this test reads no model files');
    },
    ...opts.core,
  };
}
