/**
 * Hand-built ModelSpecs for the planner's tests (no file needed): llama shapes with the byte
 * counts the forge (src/gguf/forge.ts) writes, and one shaped like a real 8B Q4_K_M file.
 */
import type { ModelSpec } from '../gguf/types.js';

export interface LlamaShape {
  layers: number;
  embd: number;
  heads: number;
  kvHeads: number;
  ff: number;
  vocab: number;
  ctx?: number;
}

const BYTES: Record<string, number> = { F32: 4, F16: 2, Q8_0: 34 / 32 };

/** The spec of a forged llama model of this shape and weight type ('F32' | 'F16' | 'Q8_0'). */
export function llamaSpec(shape: LlamaShape, type: 'F32' | 'F16' | 'Q8_0' = 'F16'): ModelSpec {
  const { layers, embd, heads, kvHeads, ff, vocab } = shape;
  const kvDim = (embd / heads) * kvHeads;
  const weights = 2 * vocab * embd + layers * (2 * embd * embd + 2 * embd * kvDim + 3 * embd * ff);
  const norms = embd + layers * 2 * embd;
  const weightBytes = weights * BYTES[type]!;
  const bytesByType: Record<string, number> = { F32: norms * 4 };
  bytesByType[type] = (bytesByType[type] ?? 0) + weightBytes;
  return {
    architecture: 'llama',
    name: `test-llama-${Math.round((weights + norms) / 1e6)}M`,
    parameterCount: weights + norms,
    tensorBytes: weightBytes + norms * 4,
    bytesByType,
    fileType: type === 'F32' ? 'ALL_F32' : `MOSTLY_${type}`,
    layers,
    embeddingSize: embd,
    feedForwardSize: ff,
    headCount: heads,
    headCountKv: kvHeads,
    headDimK: embd / heads,
    headDimV: embd / heads,
    contextLength: shape.ctx ?? 32768,
    vocabSize: vocab,
    hasChatTemplate: false,
  };
}

/** ~20M parameters, GQA 4 (the bench's small model). */
export const SMALL: LlamaShape = {
  layers: 8,
  embd: 384,
  heads: 12,
  kvHeads: 3,
  ff: 1024,
  vocab: 8192,
};
/** ~155M parameters, GQA 4. */
export const MEDIUM: LlamaShape = {
  layers: 11,
  embd: 1024,
  heads: 16,
  kvHeads: 4,
  ff: 2752,
  vocab: 16384,
};
/** ~1B parameters, GQA 4. */
export const LARGE: LlamaShape = {
  layers: 20,
  embd: 2048,
  heads: 16,
  kvHeads: 4,
  ff: 5440,
  vocab: 32000,
};

/** Shaped like Llama-3.1-8B-Instruct Q4_K_M (4.58 GiB of tensors, 128k vocab, GQA 4). */
export const LLAMA3_8B_Q4_K_M: ModelSpec = {
  architecture: 'llama',
  name: 'Llama 3.1 8B Instruct',
  parameterCount: 8_030_261_248,
  tensorBytes: 4_920_734_720,
  bytesByType: { F32: 266_342_400, Q4_K: 3_623_878_656, Q6_K: 1_030_513_664 },
  fileType: 'MOSTLY_Q4_K_M',
  layers: 32,
  embeddingSize: 4096,
  feedForwardSize: 14336,
  headCount: 32,
  headCountKv: 8,
  headDimK: 128,
  headDimV: 128,
  contextLength: 131072,
  vocabSize: 128256,
  hasChatTemplate: true,
};

/**
 * Shaped like Gemma-3-27B-IT Q4_K_M: 62 layers, 5 in every 6 attending within a 1024-token
 * window (llama.cpp's gemma3 pattern: layers 5, 11, …, 59 whole), GQA 2, heads of 128.
 */
export const GEMMA3_27B_Q4_K_M: ModelSpec = {
  architecture: 'gemma3',
  name: 'Gemma 3 27B IT',
  parameterCount: 27_009_002_240,
  tensorBytes: 16_546_688_000,
  bytesByType: { F32: 1_400_000_000, Q4_K: 11_500_000_000, Q6_K: 3_646_688_000 },
  fileType: 'MOSTLY_Q4_K_M',
  layers: 62,
  embeddingSize: 5376,
  feedForwardSize: 21504,
  headCount: 32,
  headCountKv: 16,
  headDimK: 128,
  headDimV: 128,
  contextLength: 131072,
  vocabSize: 262144,
  hasChatTemplate: true,
  slidingWindow: 1024,
  slidingWindowLayers: Array.from({ length: 62 }, (_, i) => i % 6 < 5),
};
