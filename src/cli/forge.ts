import path from 'node:path';
import { formatBytes } from '../config/units.js';
import { forgeModel, parseParamCount, type ForgeOptions } from '../gguf/forge.js';
import { UsageError } from './exit.js';
import { intFlag } from './flags.js';

const TYPES = new Set(['f32', 'f16', 'q8_0']);

/** `headroom forge`: writes a synthetic llama (or Gemma 3, Mamba 2) GGUF model with random weights. */
export async function forge(values: Record<string, unknown>): Promise<number> {
  const out = values.out as string | undefined;
  if (!out) throw new UsageError('headroom forge needs --out FILE');
  const type = (values.type as string | undefined) ?? 'f16';
  if (!TYPES.has(type)) throw new UsageError(`--type must be f32, f16 or q8_0, got "${type}"`);
  const opts: ForgeOptions = { out: path.resolve(out), type: type as ForgeOptions['type'] };
  if (values.params !== undefined) {
    try {
      opts.params = parseParamCount(values.params as string);
    } catch (err) {
      throw new UsageError(`--params: ${(err as Error).message}`);
    }
  }
  const set = (
    flag: string,
    key: 'layers' | 'embd' | 'heads' | 'kvHeads' | 'ff' | 'vocab' | 'ctx' | 'seed',
  ): void => {
    const v = intFlag(values, flag);
    if (v !== undefined) opts[key] = v;
  };
  set('layers', 'layers');
  set('embd', 'embd');
  set('heads', 'heads');
  set('kv-heads', 'kvHeads');
  set('ff', 'ff');
  set('vocab', 'vocab');
  set('ctx', 'ctx');
  set('seed', 'seed');
  if (values.tied === true) opts.tied = true;
  if (values['chat-template'] !== undefined) opts.chatTemplate = values['chat-template'] as string;
  if (values.name !== undefined) opts.name = values.name as string;
  if (values.arch !== undefined) {
    if (values.arch !== 'llama' && values.arch !== 'gemma3' && values.arch !== 'mamba2')
      throw new UsageError(
        `--arch must be llama, gemma3 or mamba2, got "${values.arch as string}"`,
      );
    opts.architecture = values.arch;
  }
  const window = intFlag(values, 'sliding-window');
  if (window !== undefined) opts.slidingWindow = window;
  const ssmState = intFlag(values, 'ssm-state');
  if (ssmState !== undefined) opts.ssmState = ssmState;
  const ssmGroups = intFlag(values, 'ssm-groups');
  if (ssmGroups !== undefined) opts.ssmGroups = ssmGroups;

  const controller = new AbortController();
  const onSignal = (): void => controller.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  try {
    const started = performance.now();
    const result = await forgeModel(opts, controller.signal);
    const secs = (performance.now() - started) / 1000;
    if (values.json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    else
      process.stdout.write(
        `wrote ${result.path}: ${(result.parameterCount / 1e6).toFixed(1)}M parameters, ${formatBytes(result.bytes)} in ${secs.toFixed(1)} s\n`,
      );
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
  }
}
