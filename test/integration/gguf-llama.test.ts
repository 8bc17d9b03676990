/**
 * Forged models against the real engine: node-llama-cpp (llama.cpp) loads them and generates,
 * and our header reader agrees with node-llama-cpp's own GGUF reader and with llama.cpp's
 * account of the weights' size. Models are cached under .cache/models (git-ignored).
 */
import os from 'node:os';
import { getLlama, readGgufFileInfo, type Llama, type Token } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readGguf, readModelSpec, type ForgeTensorType } from '../../src/gguf/index.js';
import { cachedModel } from '../helpers/models.js';

const THREADS = Math.min(2, os.availableParallelism());

let llama: Llama;
beforeAll(async () => {
  // build 'never' and explicit threads: see ENGINE-NOTES.md pitfalls 1 and 2.
  llama = await getLlama({
    build: 'never',
    gpu: false,
    maxThreads: THREADS,
    logLevel: 'error' as never,
  });
});
afterAll(async () => {
  await llama?.dispose();
});

/** ~6M parameters: 24 MB in F32, 12 MB in F16, 6.5 MB in Q8_0. */
function model(type: ForgeTensorType): Promise<string> {
  return cachedModel(`gguf-llama-${type}-6m-ctx2048-seed3`, {
    params: 6_000_000,
    type,
    ctx: 2048,
    seed: 3,
    chatTemplate: 'chatml',
  });
}

describe.each<ForgeTensorType>(['f32', 'f16', 'q8_0'])('a forged %s model', (type) => {
  it('reads the same header as node-llama-cpp', async () => {
    const file = await model(type);
    const ours = await readGguf(file);
    const theirs = await readGgufFileInfo(file, { logWarnings: false });
    expect(ours.version).toBe(theirs.version);
    expect(theirs.tensorInfo).toHaveLength(ours.tensors.length);
    ours.tensors.forEach((t, i) => {
      const o = theirs.tensorInfo![i]!;
      expect({ name: t.name, dims: t.dims, type: t.type, offset: t.offset }).toEqual({
        name: o.name,
        dims: o.dimensions.map(Number),
        type: o.ggmlType,
        offset: Number(o.fileOffset),
      });
    });
    expect(ours.metadata.get('llama.block_count')).toBe(theirs.metadata.llama?.block_count);
    expect((ours.metadata.get('tokenizer.ggml.tokens') as string[]).length).toBe(
      theirs.metadata.tokenizer?.ggml.tokens.length,
    );
  });

  it('loads in llama.cpp, which counts the same weight bytes, and generates', async () => {
    const file = await model(type);
    const spec = await readModelSpec(file);
    const m = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
    try {
      expect(m.size).toBe(spec.tensorBytes);
      expect(m.fileInsights.modelSize).toBe(spec.tensorBytes);
      expect(m.trainContextSize).toBe(spec.contextLength);
      expect(m.fileInsights.totalLayers - 1).toBe(spec.layers); // node-llama-cpp counts the output layer
      const ctx = await m.createContext({ contextSize: 256, threads: THREADS });
      try {
        const seq = ctx.getSequence();
        const prompt = m.tokenize('The quick brown fox jumps over the lazy dog');
        expect(prompt.length).toBeGreaterThan(3);
        const out: Token[] = [];
        // Random weights may well pick an end token: the generator is driven past it.
        for await (const token of seq.evaluate(prompt, { temperature: 0 })) {
          out.push(token);
          if (out.length === 6) break;
        }
        expect(out).toHaveLength(6);
        for (const t of out) expect(t).toBeLessThan(spec.vocabSize);
      } finally {
        await ctx.dispose();
      }
    } finally {
      await m.dispose();
    }
  });
});
