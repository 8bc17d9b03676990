import type { RunnerConfig } from '../types.js';

/**
 * llama-server's command line for a config. Everything that decides memory is explicit, so the
 * runner is the config headroom planned and not what llama-server would pick on its own:
 * - `-c` is the cells of all slots together; each of the `-np` slots gets `-c / -np`, and
 *   headroom's contextSize is per sequence (ENGINE-NOTES: "-c is the total cells across slots").
 * - `--fit off`: llama-server would otherwise shrink unset options to fit the device itself.
 * - `--cache-ram 0`: its host-memory prompt cache (8 GiB by default) is memory no plan counts;
 *   a slot still reuses the prefix it holds.
 * - `-ngl` always: newer builds offload every layer to a GPU when asked nothing.
 * - `--no-kv-unified`: one KV buffer per slot, as planned (unified is its default only when the
 *   slot count is automatic, which it never is here).
 * - `--load-mode none` for a config without mmap (this version has no `--no-mmap`).
 * - `-ub` = `-b`: the planner sizes compute buffers for a whole batch (node-llama-cpp does the same).
 * - `--ctx-checkpoints`: for a sliding-window or recurrent model each slot keeps copies of its
 *   window cache or state (32 by default: for a 27B Gemma 3, 416 MiB each); CONTEXT_CHECKPOINTS
 *   are planned for.
 */

/**
 * Context checkpoints per slot: a follow-up whose prompt leaves the last answer's tail (a chat
 * template's end-of-turn tokens) reuses the cache from the newest one. The planner's llama-server
 * profile counts as many (planner/footprint.ts, contextCheckpoints).
 */
export const CONTEXT_CHECKPOINTS = 2;

export function llamaServerArgs(
  config: RunnerConfig,
  opts: {
    port: number;
    host?: string;
    /** The name answers carry as `model` (its own default is the file's path). */
    alias?: string;
    slotSavePath?: string;
    extraArgs?: readonly string[];
  },
): string[] {
  const kv = (t: RunnerConfig['kvCacheKeyType']): string => t;
  const args = [
    '--model',
    config.modelPath,
    '--host',
    opts.host ?? '127.0.0.1',
    '--port',
    String(opts.port),
    '--ctx-size',
    String(config.contextSize * config.parallel),
    '--parallel',
    String(config.parallel),
    '--threads',
    String(config.threads),
    '--threads-batch',
    String(config.threads),
    '--batch-size',
    String(config.batchSize),
    '--ubatch-size',
    String(config.batchSize),
    // A quantised V cache needs flash attention (llama.cpp refuses it otherwise).
    '--flash-attn',
    config.flashAttention || config.kvCacheValueType !== 'f16' ? 'on' : 'off',
    '--cache-type-k',
    kv(config.kvCacheKeyType),
    '--cache-type-v',
    kv(config.kvCacheValueType),
    '--n-gpu-layers',
    String(config.gpuLayers),
    '--fit',
    'off',
    '--cache-ram',
    '0',
    '--ctx-checkpoints',
    String(CONTEXT_CHECKPOINTS),
    '--no-kv-unified',
    '--metrics',
    '--slots',
    '--no-webui',
  ];
  if (opts.alias !== undefined) args.push('--alias', opts.alias);
  // This llama.cpp has no --no-mmap (it exits 1 on it): `--load-mode none` reads the weights into
  // memory; its default (`auto`) memory-maps them on a CPU.
  if (!config.mmap) args.push('--load-mode', 'none');
  if (config.embeddings) args.push('--embeddings');
  if (opts.slotSavePath !== undefined) args.push('--slot-save-path', opts.slotSavePath);
  if (opts.extraArgs) args.push(...opts.extraArgs);
  return args;
}
