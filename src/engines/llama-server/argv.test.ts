import { describe, expect, it } from 'vitest';
import type { RunnerConfig } from '../types.js';
import { runnerConfig } from '../../../test/helpers/runner.js';
import { FOOTPRINT_PROFILES } from '../../planner/footprint.js';
import { CONTEXT_CHECKPOINTS, llamaServerArgs } from './argv.js';

const base: RunnerConfig = runnerConfig('/models/m.gguf', { engine: 'llama-server', parallel: 4 });

/** The value after a flag, or undefined when the flag is absent. */
function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i < 0 ? undefined : args[i + 1];
}

describe('llamaServerArgs', () => {
  it('gives every memory-deciding option explicitly, with -c the cells of all slots', () => {
    const args = llamaServerArgs(base, { port: 40123 });
    expect(flag(args, '--model')).toBe('/models/m.gguf');
    expect(flag(args, '--host')).toBe('127.0.0.1');
    expect(flag(args, '--port')).toBe('40123');
    expect(flag(args, '--ctx-size')).toBe(String(2048 * 4));
    expect(flag(args, '--parallel')).toBe('4');
    expect(flag(args, '--threads')).toBe('2');
    expect(flag(args, '--threads-batch')).toBe('2');
    expect(flag(args, '--batch-size')).toBe('512');
    expect(flag(args, '--ubatch-size')).toBe('512');
    expect(flag(args, '--flash-attn')).toBe('on');
    expect(flag(args, '--cache-type-k')).toBe('f16');
    expect(flag(args, '--cache-type-v')).toBe('f16');
    expect(flag(args, '--n-gpu-layers')).toBe('0');
    expect(flag(args, '--fit')).toBe('off');
    expect(flag(args, '--cache-ram')).toBe('0');
    // As many as the planner counts for a sliding-window model.
    expect(flag(args, '--ctx-checkpoints')).toBe(String(CONTEXT_CHECKPOINTS));
    expect(CONTEXT_CHECKPOINTS).toBe(FOOTPRINT_PROFILES['llama-server'].contextCheckpoints);
    expect(args).toContain('--no-kv-unified');
    expect(args).toContain('--metrics');
    expect(args).toContain('--slots');
    expect(args).not.toContain('--load-mode');
    expect(args).not.toContain('--no-mmap');
    expect(args).not.toContain('--embeddings');
  });

  it('turns flash attention on for a quantised V cache, whatever the config says', () => {
    const args = llamaServerArgs(
      { ...base, flashAttention: false, kvCacheKeyType: 'q8_0', kvCacheValueType: 'q4_0' },
      { port: 1 },
    );
    expect(flag(args, '--flash-attn')).toBe('on');
    expect(flag(args, '--cache-type-k')).toBe('q8_0');
    expect(flag(args, '--cache-type-v')).toBe('q4_0');
    expect(
      flag(llamaServerArgs({ ...base, flashAttention: false }, { port: 1 }), '--flash-attn'),
    ).toBe('off');
  });

  it('adds --load-mode none, --embeddings, the slot save path and the extra arguments when asked', () => {
    const args = llamaServerArgs(
      { ...base, mmap: false, embeddings: true, gpuLayers: 33 },
      { port: 1, alias: 'my-model', slotSavePath: '/state/slots', extraArgs: ['--mlock'] },
    );
    // llama-server of this version exits 1 on --no-mmap.
    expect(flag(args, '--load-mode')).toBe('none');
    expect(args).not.toContain('--no-mmap');
    expect(args).toContain('--embeddings');
    expect(flag(args, '--slot-save-path')).toBe('/state/slots');
    expect(flag(args, '--alias')).toBe('my-model');
    expect(flag(args, '--n-gpu-layers')).toBe('33');
    expect(args.at(-1)).toBe('--mlock');
  });

  it('never passes a value through a shell: every value is its own argument', () => {
    const args = llamaServerArgs({ ...base, modelPath: '/m/a b; rm -rf x.gguf' }, { port: 1 });
    expect(args).toContain('/m/a b; rm -rf x.gguf');
  });
});
