/** What the planner and the daemon need to know of a model, derived from its GGUF header. */
export interface ModelSpec {
  /** `general.architecture`, e.g. "llama". */
  architecture: string;
  /** `general.name` when present. */
  name?: string;
  /** Total number of weights over all tensors. */
  parameterCount: number;
  /** Sum of all tensors' data bytes (what the weights take in memory). */
  tensorBytes: number;
  /** Tensor data bytes by ggml type name ("F32", "F16", "Q8_0", ...). */
  bytesByType: Record<string, number>;
  /** `general.file_type` as llama.cpp's ftype name ("ALL_F32", "MOSTLY_F16", "MOSTLY_Q4_K_M", ...) when present. */
  fileType?: string;
  /** Transformer blocks (`{arch}.block_count`). */
  layers: number;
  /** `{arch}.embedding_length`. */
  embeddingSize: number;
  /** `{arch}.feed_forward_length` (max when per-layer; 0 when absent, e.g. recurrent models). */
  feedForwardSize: number;
  /** `{arch}.attention.head_count` (max when per-layer; 0 when absent: no attention). */
  headCount: number;
  /** `{arch}.attention.head_count_kv` (max when per-layer); equals headCount when absent. */
  headCountKv: number;
  /** Per-head key size (`attention.key_length`, else embeddingSize / headCount). */
  headDimK: number;
  /** Per-head value size (`attention.value_length`, else embeddingSize / headCount). */
  headDimV: number;
  /** Trained context length (`{arch}.context_length`); 0 when the file does not say. */
  contextLength: number;
  /** Vocabulary size (`{arch}.vocab_size`, else the tokenizer's token count). */
  vocabSize: number;
  /** `tokenizer.chat_template` is present. */
  hasChatTemplate: boolean;
  /** Sliding-window size when the architecture uses one. */
  slidingWindow?: number;
  /**
   * Which layers attend within `slidingWindow` only, one flag per layer: llama.cpp gives those a
   * KV cache of the window's size (plus a batch) instead of the whole context. Set only for the
   * architectures whose llama.cpp loader does so (see SWA_PATTERNS in spec.ts).
   */
  slidingWindowLayers?: boolean[];
  /**
   * Which layers keep a recurrent state instead of a KV cache (Mamba blocks, gated delta nets),
   * one flag per layer; set only for the architectures whose layers spec.ts knows (RECURRENT).
   */
  recurrentLayers?: boolean[];
  /**
   * Bytes of recurrent state per sequence over those layers: llama.cpp's n_embd_r + n_embd_s per
   * layer (the convolution's last d_conv − 1 inputs and the SSM state), in f32.
   */
  recurrentStateBytes?: number;
  /** Number of experts for mixture-of-experts models. */
  expertCount?: number;
  /** Experts used per token (`{arch}.expert_used_count`) for mixture-of-experts models. */
  expertUsedCount?: number;
  /** `{arch}.attention.head_count_kv` per layer, when the file gives a list (0 = no KV cache in that layer). */
  headCountKvPerLayer?: number[];
  /** `{arch}.feed_forward_length` per layer, when the file gives a list. */
  feedForwardSizePerLayer?: number[];
}

export type GgmlTypeName = string;
