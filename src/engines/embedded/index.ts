import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { Engine } from '../engine.js';
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
  /** The runner's whole environment: the daemon's plus GLIBC_TUNABLES (see runnerEnv). */
  env: NodeJS.ProcessEnv;
}

/**
 * glibc's malloc serves blocks of at least this size with their own mmap and unmaps them when
 * freed. Its default threshold is dynamic: freeing an mmapped block raises it (up to 32 MiB), so
 * the context buffers llama.cpp frees (an embedding context disposed by POST /trim) stayed in the
 * heap and the runner's RSS did not drop. Measured (15M-parameter model, embedding context of
 * 2048 tokens): dispose freed 0 MiB by default and 45 MiB with a fixed 1 MiB threshold; 150M
 * model: 90 MiB the first time either way, but 0 the second time by default against 23 MiB.
 * Blocks below it (node-llama-cpp's per-call sampler arrays, n_vocab × 12 bytes, up to 1 MiB at
 * an 87k vocabulary) stay in the heap where they are reused without page faults.
 */
export const MALLOC_MMAP_THRESHOLD = 1024 * 1024;

/** The runner's environment: `base` plus the glibc tunable above (ignored by other libcs). */
export function runnerEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const current = base.GLIBC_TUNABLES;
  // A threshold the user set wins.
  if (current?.includes('glibc.malloc.mmap_threshold=')) return { ...base };
  const tunable = `glibc.malloc.mmap_threshold=${MALLOC_MMAP_THRESHOLD}`;
  return { ...base, GLIBC_TUNABLES: current ? `${current}:${tunable}` : tunable };
}

export function embeddedSpawnSpec(config: RunnerConfig, stateDir?: string): EmbeddedSpawnSpec {
  return {
    command: process.execPath,
    env: runnerEnv(),
    // --expose-gc: the runner collects the native garbage node-llama-cpp leaves (native-garbage.ts).
    // --max-semi-space-size=1: V8's young generation stays at 1 MiB semi-spaces. Left to grow it
    // took ~21 MiB more by the end of a load and up to ~14 MiB more while a long prompt was read
    // (a 2-layer model at 16384 cells: +26.6 MiB anonymous over the fill, +12.5 with the flag),
    // by an amount that varied from run to run: memory the planner could not predict.
    // --heap-growing-percent=10: the old generation may grow 10 % (at least V8's 8 MB step) past
    // what the last full collection kept before the next one starts. node-llama-cpp replaces a
    // sequence's token array with a copy on every evaluation call (8 bytes a token in context,
    // dead once the next call returns), so a long prompt read in 64-token chunks leaves n²/16
    // bytes of old-generation garbage: 64 MiB for 32768 tokens. V8's own factor let ~17 MB of it
    // stay resident over a ~18 MB live heap; with this flag ~8 (2-layer model, 32768 cells:
    // peak RSS 136–141 MiB in four runs, 130.0 and 130.6 with it; as many full collections).
    args: [
      '--expose-gc',
      '--max-semi-space-size=1',
      '--heap-growing-percent=10',
      runnerEntryPath(),
      JSON.stringify(runnerConfigSchema.parse(config)),
      // Where its slot saves and restores read and write (state across unloads).
      ...(stateDir !== undefined ? [stateDir] : []),
    ],
  };
}

/** POST /trim of a runner: what it released and its resident set around it (VmRSS, bytes). */
export const trimReportSchema = z.object({
  rssBefore: z.number().nonnegative(),
  rssAfter: z.number().nonnegative(),
  /** rssBefore − rssAfter, never below 0: what the trim returned to the system, as measured. */
  freedBytes: z.number().nonnegative(),
  /** 'prompt-cache' (idle slots' cached tokens), 'embedding-context'. */
  released: z.array(z.string()),
  /** Cached prompt tokens forgotten over all idle slots. */
  forgottenTokens: z.number().int().nonnegative(),
  /** Slots serving a request when the trim began, left alone. */
  busySlots: z.number().int().nonnegative(),
});
export type TrimReport = z.infer<typeof trimReportSchema>;

/** The embedded node-llama-cpp runner behind the Engine interface. */
const slotViews = z.array(
  z.object({
    id: z.number().int(),
    tokens: z.number().int(),
    busy: z.boolean(),
    contextSize: z.number().int(),
  }),
);
const saved = z.object({ tokens: z.number().int(), bytes: z.number().int() });
const restored = z.object({ tokens: z.number().int() });
const promptTokens = z.object({ tokens: z.array(z.number().int()).nullable() });

/** A JSON call to the embedded runner; rejects with its error message on a non-2xx answer. */
async function call(
  url: string,
  method: 'GET' | 'POST',
  path: string,
  body: unknown,
  signal: AbortSignal,
): Promise<unknown> {
  const res = await fetch(new URL(path, url), {
    method,
    ...(body !== undefined
      ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
      : {}),
    signal,
  });
  const json = (await res.json().catch(() => undefined)) as
    { error?: { message?: string } } | undefined;
  if (!res.ok)
    throw new Error(`${method} ${path} answered ${res.status}: ${json?.error?.message ?? ''}`);
  return json;
}

export const embeddedEngine: Engine = {
  kind: 'embedded',
  capabilities: {
    embeddings: 'always',
    tokenize: true,
    trim: true,
    cancelsPromptEvaluation: true,
    backpressure: true,
    keepAliveAfterStream: true,
  },
  needsPort: false,
  launch(config, ctx) {
    return { ...embeddedSpawnSpec(config, ctx.stateDir), readiness: { kind: 'ipc' } };
  },
  state: {
    async slots(url, signal) {
      return slotViews.parse(await call(url, 'GET', '/slots', undefined, signal));
    },
    async save(url, slot, fileName, signal) {
      return saved.parse(
        await call(url, 'POST', '/slots/save', { slot, filename: fileName }, signal),
      );
    },
    async restore(url, slot, fileName, signal) {
      return restored.parse(
        await call(url, 'POST', '/slots/restore', { slot, filename: fileName }, signal),
      );
    },
    async promptTokens(url, path, body, signal) {
      const r = promptTokens.parse(
        await call(url, 'POST', '/prompt-tokens', { path, body }, signal),
      );
      return r.tokens ?? undefined;
    },
    // The runner gives a request the free slot holding most of its prompt: no pinning needed.
    pinToSlot: (body) => body,
    // node-llama-cpp gives each of a context's sequences a stream of its own (no unified cache).
    streams: (config) => config.parallel,
    // Measured with forged Gemma 3 and Mamba 2 models: their restored states are reused.
    reusesRestored: () => true,
  },
  async load(url, _config, signal) {
    const res = await fetch(new URL('/stats', url), { signal });
    if (!res.ok) return undefined;
    const s = (await res.json()) as { tokensInUse?: unknown; busy?: unknown };
    if (typeof s.tokensInUse !== 'number') return undefined;
    return { tokensInUse: s.tokensInUse, busy: typeof s.busy === 'number' ? s.busy : 0 };
  },
  async trim(url, _config, reason, signal) {
    const res = await fetch(new URL('/trim', url), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ reason }),
      signal,
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
    const report = trimReportSchema.parse(await res.json());
    return {
      freedBytes: report.freedBytes,
      released: report.released,
      busySlots: report.busySlots,
    };
  },
  // The runner renders headroom's own envelope already.
  translateError: () => undefined,
};
