import { z } from 'zod';
import { DEFAULT_MONITOR_CONFIG, monitorConfigSchema } from './monitor.js';
import { contextSizeSchema, kvCacheTypeSchema, parallelSchema } from '../lib/runner-sizes.js';

/**
 * The daemon's configuration. Every option has a default, so an empty file (or none) is valid.
 * This schema is the single source: `config/load.ts` parses YAML into it, `docs/config.schema.json`
 * is generated from it (and tested to stay in sync), and flags override it.
 */

/** A duration such as `5m`, `30s`, `1h`, `1500ms`, a number of milliseconds, or `never`. */
export const durationSchema = z.union([
  z.literal('never'),
  z.number().int().nonnegative(),
  z
    .string()
    .regex(
      /^\d+(?:\.\d+)?\s*(ms|s|m|h|d)$/,
      'a duration such as "500ms", "30s", "5m", "1h" or "never"',
    ),
]);

/** A byte size such as `8GB`, `512MiB`, `1.5G`, or a number of bytes. */
export const byteSizeSchema = z.union([
  z.number().int().nonnegative(),
  z
    .string()
    .regex(
      /^\d+(?:\.\d+)?\s*(B|K|KB|KiB|M|MB|MiB|G|GB|GiB|T|TB|TiB)?$/i,
      'a size such as "512MB", "8GiB" or a number of bytes',
    ),
]);

export { kvCacheTypeSchema };

export const engineKindSchema = z.enum(['llama-server', 'embedded', 'command']);

const enginesSchema = z
  .object({
    default: z
      .enum(['auto', 'llama-server', 'embedded'])
      .default('auto')
      .describe(
        "The engine models run on: llama-server (llama.cpp's server, one process per model), embedded (node-llama-cpp in a Node process per model), or auto: llama-server when a binary is found, else embedded. Defaults to auto.",
      ),
    llamaServer: z
      .object({
        path: z
          .string()
          .min(1)
          .optional()
          .describe(
            'The llama-server binary. Defaults to llama-server on PATH, else the one built at install.',
          ),
        args: z
          .array(z.string())
          .default([])
          .describe('Arguments appended to headroom\'s own (e.g. ["--mlock"]). Defaults to none.'),
      })
      .strict()
      .default({ args: [] })
      .describe("llama.cpp's server: which binary, and extra arguments."),
  })
  .strict();

// A runner's sizes, shared by the defaults and each model's overrides (and with the APIs that ask
// for a load: src/lib/runner-sizes.ts) so their ranges agree.
const threadsSchema = z.number().int().min(1).max(1024);
const batchSizeSchema = z.number().int().min(16).max(65536);

const runnerDefaultsSchema = z
  .object({
    contextSize: contextSizeSchema
      .default(4096)
      .describe('Context size in tokens for loads that do not ask for one. Defaults to 4096.'),
    parallel: parallelSchema
      .default(1)
      .describe('Parallel sequences per loaded model. Defaults to 1.'),
    threads: threadsSchema
      .optional()
      .describe('CPU threads per runner. Defaults to the available cores.'),
    batchSize: batchSizeSchema.default(512).describe('Batch size in tokens. Defaults to 512.'),
    flashAttention: z
      .boolean()
      .default(true)
      .describe('Flash attention. Defaults to true (required for a quantised V cache).'),
    kvCacheType: kvCacheTypeSchema
      .default('f16')
      .describe('KV cache type for keys and values. Defaults to f16.'),
    mmap: z
      .boolean()
      .default(true)
      .describe('Memory-map weights (file-backed, reclaimable). Defaults to true.'),
    gpuLayers: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe('Layers offloaded to a GPU. Defaults to 0.'),
  })
  .strict();

const modelOverrideSchema = z
  .object({
    path: z
      .string()
      .min(1)
      .optional()
      .describe('Path of the GGUF file, when it is not in a models directory.'),
    contextSize: contextSizeSchema
      .optional()
      .describe('Context size in tokens for this model. Defaults to runner.contextSize.'),
    parallel: parallelSchema
      .optional()
      .describe('Parallel sequences. Defaults to runner.parallel.'),
    threads: threadsSchema.optional().describe('CPU threads. Defaults to runner.threads.'),
    batchSize: batchSizeSchema
      .optional()
      .describe('Batch size in tokens. Defaults to runner.batchSize.'),
    flashAttention: z
      .boolean()
      .optional()
      .describe('Flash attention. Defaults to runner.flashAttention.'),
    kvCacheType: kvCacheTypeSchema
      .optional()
      .describe('KV cache type (fixed: the fit search does not change it). Defaults to the fit.'),
    mmap: z.boolean().optional().describe('Memory-map the weights. Defaults to runner.mmap.'),
    gpuLayers: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('Layers offloaded to a GPU. Defaults to runner.gpuLayers.'),
    engine: engineKindSchema
      .optional()
      .describe(
        'The engine that runs this model: llama-server, embedded, or command (the server in `command`). Defaults to engines.default, or command when `command` is given.',
      ),
    command: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe(
        'An OpenAI-compatible server to run for this model, as argv (no shell): ${PORT}, ${HOST} and ${MODEL} (its path) are filled in, e.g. ["whisper-server", "--port", "${PORT}", "-m", "${MODEL}"].',
      ),
    health: z
      .string()
      .regex(/^\/[\x21-\x7e]*$/, 'an absolute URL path such as "/health"')
      .optional()
      .describe("The command's path that answers 200 once it is ready. Defaults to /health."),
    memory: byteSizeSchema
      .optional()
      .describe(
        'What the command takes, planned before it starts (no model file tells). Defaults to 0: charged what it is measured to hold.',
      ),
    embeddings: z
      .boolean()
      .optional()
      .describe(
        'Serve embeddings. llama-server serves /v1/embeddings only from a runner started with --embeddings (it serves chat too); a model without a pooling type (most chat models) also needs --pooling in engines.llamaServer.args. The embedded runner serves embeddings from every runner. Defaults to false.',
      ),
    ttl: durationSchema
      .optional()
      .describe('Idle time before this model is unloaded. Defaults to scheduler.ttl.'),
    pin: z
      .boolean()
      .optional()
      .describe('Never evict this model for room nor unload it by TTL. Defaults to false.'),
    contextOverflow: z
      .enum(['error', 'truncate_middle'])
      .optional()
      .describe(
        'What a prompt longer than the context gets: "error" (400 with both counts) or "truncate_middle" (keep the system prompt and the latest turns that fit). Defaults to error.',
      ),
  })
  .strict();

const modelNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/, 'model names use letters, digits, ".", "_", ":" and "-"');

export const optimisationLevelSchema = z.enum(['basic', 'aggressive', 'maximum']);

const GPU_BUDGET_DEFAULTS = { fraction: 0.9, reserve: '512MiB' } as const;

const SCHEDULER_DEFAULTS = {
  budget: { fraction: 0.8, reserve: '1GiB', gpu: GPU_BUDGET_DEFAULTS },
  ttl: '5m',
  queue: { maxLength: 32, maxWait: '5m' },
  drainDeadline: '30s',
  optimisation: 'basic',
  pin: [],
  preload: [],
  backoff: { base: '1s', max: '60s' },
  measureInterval: '2s',
  recycle: { enabled: true, growth: '256MiB', fraction: 0.25, minRequests: 100 },
} as const;

const schedulerSchema = z
  .object({
    budget: z
      .object({
        fraction: z
          .number()
          .gt(0)
          .max(1)
          .default(0.8)
          .describe('Share of physical RAM models may use. Defaults to 0.8.'),
        cap: byteSizeSchema
          .optional()
          .describe('Most bytes models may use, whatever the RAM. Defaults to no cap.'),
        reserve: byteSizeSchema
          .default('1GiB')
          .describe(
            'Bytes kept free for the daemon and the rest of the machine, taken off the smallest of RAM × fraction, the cgroup limit and the cap. Defaults to 1GiB.',
          ),
        gpu: z
          .object({
            fraction: z
              .number()
              .gt(0)
              .max(1)
              .default(GPU_BUDGET_DEFAULTS.fraction)
              .describe("Share of each GPU's memory models may use. Defaults to 0.9."),
            cap: byteSizeSchema
              .optional()
              .describe('Most bytes models may use on each GPU. Defaults to no cap.'),
            reserve: byteSizeSchema
              .default(GPU_BUDGET_DEFAULTS.reserve)
              .describe(
                'Bytes kept free on each GPU, taken off the smallest of its memory × fraction, its free memory when the daemon starts and the cap. Defaults to 512MiB.',
              ),
          })
          .strict()
          .default(GPU_BUDGET_DEFAULTS)
          .describe('The same budget for each GPU (a machine without GPUs ignores it).'),
      })
      .strict()
      .default(SCHEDULER_DEFAULTS.budget)
      .describe(
        'The memory models may use: min(RAM × fraction, the cgroup limit, cap) − reserve (docs/GUIDE.md).',
      ),
    ttl: durationSchema
      .default('5m')
      .describe('Idle time before a model is unloaded ("never", "5m", "1h", …). Defaults to 5m.'),
    maxLoadedModels: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe('Models loaded at once. Defaults to no limit (the budget decides).'),
    queue: z
      .object({
        maxLength: z
          .number()
          .int()
          .min(1)
          .max(100_000)
          .default(32)
          .describe('Requests waiting per model; one more gets 429. Defaults to 32.'),
        maxWait: durationSchema
          .default('5m')
          .describe('Longest a request waits in a queue before 429. Defaults to 5m.'),
      })
      .strict()
      .default(SCHEDULER_DEFAULTS.queue)
      .describe('Each model’s queue of requests waiting for a slot.'),
    drainDeadline: durationSchema
      .default('30s')
      .describe(
        'How long a model being unloaded may finish its requests in flight before it is stopped anyway. Defaults to 30s.',
      ),
    optimisation: optimisationLevelSchema
      .default('basic')
      .describe(
        'How far a plan may be degraded to fit (basic: smaller context; aggressive/maximum: quantised KV, smaller batch). Defaults to basic.',
      ),
    pin: z
      .array(modelNameSchema)
      .default([])
      .describe('Models never evicted for room nor unloaded by TTL. Defaults to none.'),
    preload: z
      .array(modelNameSchema)
      .default([])
      .describe('Models loaded when the daemon starts. Defaults to none.'),
    backoff: z
      .object({
        base: durationSchema.default('1s').describe('First wait. Defaults to 1s.'),
        max: durationSchema.default('60s').describe('Longest wait. Defaults to 60s.'),
      })
      .strict()
      .default(SCHEDULER_DEFAULTS.backoff)
      .describe('Wait before reloading a model that failed twice in a row, doubling up to max.'),
    measureInterval: durationSchema
      .default('2s')
      .describe('How often loaded runners are measured (RSS, peak). Defaults to 2s.'),
    recycle: z
      .object({
        enabled: z
          .boolean()
          .default(SCHEDULER_DEFAULTS.recycle.enabled)
          .describe('Restart runners that grow past their plan. Defaults to true.'),
        growth: byteSizeSchema
          .default(SCHEDULER_DEFAULTS.recycle.growth)
          .describe('Growth past the plan allowed before a restart, at least. Defaults to 256MiB.'),
        fraction: z
          .number()
          .min(0)
          .default(SCHEDULER_DEFAULTS.recycle.fraction)
          .describe(
            'Growth allowed as a share of the plan, when larger than growth. Defaults to 0.25.',
          ),
        minRequests: z
          .number()
          .int()
          .min(1)
          .default(SCHEDULER_DEFAULTS.recycle.minRequests)
          .describe('Requests a runner serves before it may be restarted. Defaults to 100.'),
      })
      .strict()
      .default(SCHEDULER_DEFAULTS.recycle)
      .describe(
        'Restart a runner whose resident set grew past its plan (node-llama-cpp leaks a little per concurrent generation): stopped when idle, drained when busy past twice the allowance; the next request loads it again.',
      ),
  })
  .strict();

/** Saved sequence state across unloads (src/state/, daemon/state-keeper.ts). */
export const stateSchema = z
  .object({
    enabled: z
      .boolean()
      .default(true)
      .describe(
        'Save idle slots before TTL, eviction, pressure (below critical) and drained unloads. Defaults to true.',
      ),
    minTokens: z
      .number()
      .int()
      .min(1)
      .default(256)
      .describe(
        'Fewest tokens a slot holds to be saved, and a saved state shares with a prompt to be restored. Defaults to 256.',
      ),
    maxBytes: byteSizeSchema
      .default('4GiB')
      .describe(
        'Bytes all saved states together may take on disk; least recently used go first. Defaults to 4GiB.',
      ),
    saveTimeout: durationSchema
      .default('10s')
      .describe(
        'Longest the saves before one unload may take (the runner is stopped then, whatever is unsaved), and the save of a slot a restore reuses. Defaults to 10s.',
      ),
  })
  .strict();

const storeSchema = (tool: string, where: string) =>
  z
    .object({
      enabled: z
        .boolean()
        .default(false)
        .describe(`Serve the GGUF models in ${tool}'s store (read only). Defaults to false.`),
      path: z.string().min(1).optional().describe(`The store's directory. Defaults to ${where}.`),
    })
    .strict()
    .default({ enabled: false });

const discoverSchema = z
  .object({
    ollama: storeSchema('Ollama', '$OLLAMA_MODELS, else ~/.ollama/models').describe(
      'Models pulled with Ollama, named as `ollama list` shows them (llama3.2:latest).',
    ),
    lmstudio: z
      .object({
        enabled: z
          .boolean()
          .default(false)
          .describe(
            "Serve the GGUF models in LM Studio's models folder (read only). Defaults to false.",
          ),
        paths: z
          .array(z.string().min(1))
          .optional()
          .describe(
            'The models folders. Defaults to ~/.lmstudio/models and ~/.cache/lm-studio/models.',
          ),
      })
      .strict()
      .default({ enabled: false })
      .describe('Models downloaded with LM Studio, named publisher/repo/file (without .gguf).'),
    huggingface: storeSchema(
      'the Hugging Face hub cache',
      '$HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub',
    ).describe(
      'GGUF files in the Hugging Face hub cache, named org/repo:QUANT as llama.cpp -hf takes them.',
    ),
  })
  .strict();

const securitySchema = z
  .object({
    apiKey: z
      .string()
      .min(16, 'an API key of at least 16 characters')
      .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')
      .optional()
      .describe(
        'The key every request must present as "Authorization: Bearer KEY" (or "x-api-key: KEY"), except the dashboard page and an open /metrics; required to bind a non-loopback address. --api-key and $HEADROOM_API_KEY override it. Defaults to none.',
      ),
    allowedHosts: z
      .array(z.string().min(1))
      .default([])
      .describe(
        'Host names requests may address beside IP literals, localhost and the bound address (the DNS-rebinding guard); "*" turns the check off. Defaults to none.',
      ),
    corsOrigins: z
      .array(z.string().min(1))
      .default([])
      .describe(
        'Web origins (e.g. "https://app.example:3000", or "*") whose pages may call the API from a browser. Defaults to none: CORS off, cross-origin browser requests refused.',
      ),
    openMetrics: z
      .boolean()
      .default(false)
      .describe('Serve /metrics without the API key (for a scraper). Defaults to false.'),
  })
  .strict();

export const configSchema = z
  .object({
    host: z
      .string()
      .min(1)
      .default('127.0.0.1')
      .describe('Address to bind. Defaults to 127.0.0.1 (loopback only).'),
    port: z
      .number()
      .int()
      .min(0)
      .max(65535)
      .default(8642)
      .describe('Port to listen on. Defaults to 8642.'),
    modelDirs: z
      .array(z.string().min(1))
      .default([])
      .describe('Directories scanned for *.gguf files. Defaults to none.'),
    models: z
      .record(
        modelNameSchema,
        modelOverrideSchema.describe('Settings of the model of that name, over runner.'),
      )
      .default({})
      .describe('Per-model settings, keyed by model name.'),
    runner: runnerDefaultsSchema
      .default(runnerDefaultsSchema.parse({}))
      .describe('The settings every model is loaded with; models.<name> overrides them per model.'),
    engines: enginesSchema
      .default(() => enginesSchema.parse({}))
      .describe('Which program runs models, and where llama-server is.'),
    demoModel: z
      .boolean()
      .default(true)
      .describe(
        'Forge a small demo model on first run when no models are configured. Defaults to true.',
      ),
    logFormat: z
      .enum(['json', 'pretty', 'auto'])
      .default('auto')
      .describe(
        'Daemon log lines: json, pretty (human-readable), or auto (pretty on a terminal, JSON when piped). HEADROOM_LOG_FORMAT overrides it. Defaults to auto.',
      ),
    limits: z
      .object({
        maxBodyBytes: byteSizeSchema
          .default('4MiB')
          .describe('Largest request body accepted. Defaults to 4MiB.'),
        loadTimeout: durationSchema
          .default('120s')
          .describe('Longest a model load may take. Defaults to 120s.'),
        stallTimeout: durationSchema
          .default('30s')
          .describe('Longest a load may go without progress. Defaults to 30s.'),
        stopGrace: durationSchema
          .default('5s')
          .describe(
            'SIGTERM-to-SIGKILL grace when stopping a runner (at most 1s for an eviction under memory pressure: the runner is idle and the memory is wanted now). Defaults to 5s.',
          ),
        healthInterval: durationSchema
          .default('5s')
          .describe(
            'How often a loaded runner is asked GET /health; after 3 checks in a row without a 200 it is taken for hung, killed, and loaded again on the next request. "never" (or 0) turns the checks off. Defaults to 5s.',
          ),
        healthTimeout: durationSchema
          .default('5s')
          .describe('Longest one health check waits for its answer. Defaults to 5s.'),
      })
      .strict()
      .default({
        maxBodyBytes: '4MiB',
        loadTimeout: '120s',
        stallTimeout: '30s',
        stopGrace: '5s',
        healthInterval: '5s',
        healthTimeout: '5s',
      })
      .describe('Bounds on requests and runner lifetimes.'),
    scheduler: schedulerSchema
      .default(() => schedulerSchema.parse({}))
      .describe('Which models live in memory: budget, TTLs, pins, queues, drain.'),
    logs: z
      .object({
        maxBytes: byteSizeSchema
          .default('5MiB')
          .describe('Size at which a runner log is rotated. Defaults to 5MiB.'),
        keep: z
          .number()
          .int()
          .min(0)
          .max(20)
          .default(1)
          .describe('Rotated runner logs kept. Defaults to 1.'),
      })
      .strict()
      .default({ maxBytes: '5MiB', keep: 1 })
      .describe('Runner logs ($HEADROOM_HOME/logs/<model>.log).'),
    monitor: monitorConfigSchema
      .default(DEFAULT_MONITOR_CONFIG)
      .describe('Memory monitor and pressure reactions (src/config/monitor.ts).'),
    security: securitySchema
      .default(() => securitySchema.parse({}))
      .describe('API key, Host allowlist, CORS (docs/SECURITY.md).'),
    discover: discoverSchema
      .default(() => discoverSchema.parse({}))
      .describe("Other tools' model stores to serve models from. Each is off unless enabled."),
    state: stateSchema
      .default(() => stateSchema.parse({}))
      .describe(
        'Sequence state saved to disk before an unload that is not forced, and restored on the next request.',
      ),
  })
  .strict();

export type ConfigInput = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
export type KvCacheTypeName = z.output<typeof kvCacheTypeSchema>;
