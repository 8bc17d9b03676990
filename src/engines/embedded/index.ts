import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { RunnerConfig } from '../types.js';

/**
 * How the supervisor starts the embedded runner: the Node.js running us, the compiled
 * runner-main.js, and the RunnerConfig as JSON in argv (no shell, no environment tricks).
 */

const kvType = z.enum(['f16', 'q8_0', 'q4_0']);

/** The RunnerConfig a runner accepts: checked again in the runner, since it is a process boundary. */
export const runnerConfigSchema = z.object({
  modelPath: z.string().min(1),
  contextSize: z.number().int().min(16).max(4_194_304),
  parallel: z.number().int().min(1).max(256),
  threads: z.number().int().min(1).max(1024),
  batchSize: z.number().int().min(1).max(65_536),
  flashAttention: z.boolean(),
  kvCacheKeyType: kvType,
  kvCacheValueType: kvType,
  mmap: z.boolean(),
  gpuLayers: z.number().int().min(0),
});

let entry: string | undefined;

/**
 * The compiled runner script. Resolved from the package root so that it is found both from
 * dist/ and when this module runs from source under the test runner (which needs `npm run build`).
 */
export function runnerEntryPath(): string {
  if (entry) return entry;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) break;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('cannot find the headroom package root');
    dir = parent;
  }
  const file = path.join(dir, 'dist', 'engines', 'embedded', 'runner-main.js');
  if (!existsSync(file))
    throw new Error(`the embedded runner is not built (${file} is missing): run "npm run build"`);
  entry = file;
  return file;
}

export interface EmbeddedSpawnSpec {
  command: string;
  args: string[];
}

export function embeddedSpawnSpec(config: RunnerConfig): EmbeddedSpawnSpec {
  return {
    command: process.execPath,
    args: [runnerEntryPath(), JSON.stringify(runnerConfigSchema.parse(config))],
  };
}
