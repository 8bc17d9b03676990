/**
 * The planner's memory layouts against the real engines: a forged Gemma 3 (5 layers in every 6
 * attend within a sliding window) and a forged Mamba 2 (a recurrent state per sequence, no KV
 * cache), loaded by node-llama-cpp and by llama-server with headroom's own arguments, whose
 * llama.cpp logs say how large each cache is and how large each context checkpoint. The planner
 * must say the same bytes.
 */
import os from 'node:os';
import { getLlama, LlamaLogLevel, type Llama } from 'node-llama-cpp';
import { afterAll, describe, expect, it } from 'vitest';
import { llamaServerArgs } from '../../src/engines/llama-server/argv.js';
import type { RunnerConfig } from '../../src/engines/types.js';
import { readModelSpec } from '../../src/gguf/index.js';
import { predictFootprint } from '../../src/planner/footprint.js';
import { testLlamaServerBinary } from '../helpers/engines.js';
import { startLlamaServer, type StartedLlamaServer } from '../helpers/llama-server.js';
import { cachedModel } from '../helpers/models.js';

const MiB = 1024 * 1024;
const THREADS = Math.min(2, os.availableParallelism());

function gemma3(): Promise<string> {
  return cachedModel('memory-layouts-gemma3-12x256-w256', {
    architecture: 'gemma3',
    layers: 12,
    embd: 256,
    heads: 4,
    kvHeads: 2,
    ff: 512,
    vocab: 2048,
    slidingWindow: 256,
    ctx: 8192,
    chatTemplate: 'chatml',
  });
}

function mamba2(): Promise<string> {
  return cachedModel('memory-layouts-mamba2-4x256-s64-g2', {
    architecture: 'mamba2',
    layers: 4,
    embd: 256,
    heads: 8,
    vocab: 2048,
    ssmState: 64,
    ssmGroups: 2,
    chatTemplate: 'chatml',
  });
}

/** The MiB of every KV cache and recurrent memory llama.cpp reports (`… size = X MiB`), summed. */
function kvMiB(log: string): number {
  return [
    ...log.matchAll(/(?:llama_kv_cache|llama_memory_recurrent): size =\s+([\d.]+) MiB/g),
  ].reduce((a, m) => a + Number(m[1]), 0);
}

function config(modelPath: string): RunnerConfig {
  return {
    modelPath,
    contextSize: 2048,
    parallel: 2,
    threads: THREADS,
    batchSize: 256,
    flashAttention: true,
    kvCacheKeyType: 'f16',
    kvCacheValueType: 'f16',
    mmap: true,
    gpuLayers: 0,
  };
}

/** llama.cpp's log lines since the last `embeddedLog` call (one node-llama-cpp for the file). */
let log = '';
let llama: Llama | undefined;
afterAll(async () => {
  await llama?.dispose();
});

/** What llama.cpp logs while node-llama-cpp loads `file` and creates a context for `c`. */
async function embeddedLog(file: string, c: RunnerConfig): Promise<string> {
  llama ??= await getLlama({
    build: 'never',
    gpu: false,
    maxThreads: THREADS,
    logLevel: LlamaLogLevel.info,
    logger: (_level, message) => void (log += `${message}\n`),
  });
  log = '';
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const ctx = await model.createContext({
    contextSize: c.contextSize,
    sequences: c.parallel,
    batchSize: c.batchSize,
    flashAttention: c.flashAttention,
    threads: THREADS,
  });
  await ctx.dispose();
  await model.dispose();
  return log;
}

describe('memory layouts, planned as llama.cpp allocates them', () => {
  // window + batch = 512 cells on llama-server; node-llama-cpp asks for one more, so 768.
  it('node-llama-cpp: the whole and the window caches (its batch + 1)', async () => {
    const file = await gemma3();
    const spec = await readModelSpec(file);
    expect(spec.slidingWindowLayers?.filter(Boolean)).toHaveLength(10);
    const c = config(file);
    const log = await embeddedLog(file, c);
    const planned = predictFootprint(spec, c).kvCache / MiB;
    console.log(`node-llama-cpp KV: ${kvMiB(log)} MiB, planned ${planned} MiB`);
    expect(log).toMatch(/creating\s+SWA KV cache/);
    expect(kvMiB(log)).toBeCloseTo(planned, 2);
  });

  it('node-llama-cpp: a recurrent state per sequence and no KV cache', async () => {
    const file = await mamba2();
    const spec = await readModelSpec(file);
    expect(spec.recurrentLayers).toEqual([true, true, true, true]);
    const c = config(file);
    const log = await embeddedLog(file, c);
    const planned = predictFootprint(spec, c).kvCache / MiB;
    console.log(`node-llama-cpp recurrent memory: ${kvMiB(log)} MiB, planned ${planned} MiB`);
    expect(log).not.toMatch(/llama_kv_cache: size/);
    expect(kvMiB(log)).toBeCloseTo(planned, 2);
  });

  const binary = testLlamaServerBinary();
  describe.skipIf('missing' in binary)('llama-server', () => {
    let server: StartedLlamaServer | undefined;
    afterAll(() => void server?.proc.kill('SIGKILL'));

    /**
     * Starts llama-server on `file` with headroom's argv, checks its memory against the plan,
     * sends one prompt of `words` words, and gives the planned size of one checkpoint and the
     * sizes of those llama-server logged, in MiB.
     */
    async function checkpoints(
      file: string,
      words: number,
    ): Promise<{ planned: number; logged: number[] }> {
      const spec = await readModelSpec(file);
      const c = config(file);
      server?.proc.kill('SIGKILL');
      server = await startLlamaServer('path' in binary ? binary.path : '', (port) =>
        llamaServerArgs(c, { port, extraArgs: ['--log-verbosity', '4'] }),
      );
      const plan = predictFootprint(spec, c, { engine: 'llama-server' });
      console.log(
        `llama-server memory: ${kvMiB(server.output())} MiB, planned ${plan.kvCache / MiB} MiB`,
      );
      expect(kvMiB(server.output())).toBeCloseTo(plan.kvCache / MiB, 2);
      const res = await fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          messages: [{ role: 'user', content: 'the quick brown fox '.repeat(words / 4) }],
          max_tokens: 4,
        }),
      });
      expect(res.status).toBe(200);
      await res.text();
      const logged = [
        ...server.output().matchAll(/created context checkpoint .*size = ([\d.]+) MiB/g),
      ].map((m) => Number(m[1]));
      const planned = plan.terms.contextCheckpoints / c.parallel / 2 / MiB;
      console.log(`checkpoints: ${logged.join(', ')} MiB; planned ${planned} MiB each`);
      expect(logged.length).toBeGreaterThan(0);
      return { planned, logged };
    }

    it('the caches, and context checkpoints of the window and one cell each', async () => {
      // A prompt well past the window: llama-server checkpoints the window part after it.
      const { planned, logged } = await checkpoints(await gemma3(), 600);
      expect(Math.max(...logged)).toBeCloseTo(planned, 2);
    });

    it("a recurrent state, and checkpoints of the state's size", async () => {
      const { planned, logged } = await checkpoints(await mamba2(), 200);
      for (const size of logged) expect(size).toBeCloseTo(planned, 2);
    });
  });
});
