import { z } from 'zod';
import { DEFAULT_MONITOR_CONFIG, monitorConfigSchema } from '../monitor/config.js';

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

export const kvCacheTypeSchema = z.enum(['f16', 'q8_0', 'q4_0']);

const runnerDefaultsSchema = z
  .object({
    contextSize: z
      .number()
      .int()
      .min(128)
      .max(1_048_576)
      .default(4096)
      .describe('Context size in tokens for loads that do not ask for one. Defaults to 4096.'),
    parallel: z
      .number()
      .int()
      .min(1)
      .max(64)
      .default(1)
      .describe('Parallel sequences per loaded model. Defaults to 1.'),
    threads: z
      .number()
      .int()
      .min(1)
      .max(1024)
      .optional()
      .describe('CPU threads per runner. Defaults to the available cores.'),
    batchSize: z
      .number()
      .int()
      .min(16)
      .max(65536)
      .default(512)
      .describe('Batch size in tokens. Defaults to 512.'),
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
    contextSize: z.number().int().min(128).max(1_048_576).optional(),
    parallel: z.number().int().min(1).max(64).optional(),
    threads: z.number().int().min(1).max(1024).optional(),
    batchSize: z.number().int().min(16).max(65536).optional(),
    flashAttention: z.boolean().optional(),
    kvCacheType: kvCacheTypeSchema.optional(),
    mmap: z.boolean().optional(),
    gpuLayers: z.number().int().min(0).optional(),
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
        z
          .string()
          .regex(
            /^[A-Za-z0-9][A-Za-z0-9._:-]*$/,
            'model names use letters, digits, ".", "_", ":" and "-"',
          ),
        modelOverrideSchema,
      )
      .default({})
      .describe('Per-model settings, keyed by model name.'),
    runner: runnerDefaultsSchema.default(runnerDefaultsSchema.parse({})),
    demoModel: z
      .boolean()
      .default(true)
      .describe(
        'Forge a small demo model on first run when no models are configured. Defaults to true.',
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
          .describe('SIGTERM-to-SIGKILL grace when stopping a runner. Defaults to 5s.'),
      })
      .strict()
      .default({ maxBodyBytes: '4MiB', loadTimeout: '120s', stallTimeout: '30s', stopGrace: '5s' }),
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
      .default({ maxBytes: '5MiB', keep: 1 }),
    monitor: monitorConfigSchema
      .default(DEFAULT_MONITOR_CONFIG)
      .describe('Memory monitor and pressure reactions (src/monitor/config.ts).'),
  })
  .strict();

export type ConfigInput = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
export type KvCacheTypeName = z.output<typeof kvCacheTypeSchema>;
