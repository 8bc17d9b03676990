/** What a runner is asked to run: passed from the daemon to the runner process. */
export type KvCacheType = 'f16' | 'q8_0' | 'q4_0';

/** The programs that run a model (engines/engine.ts). */
export type EngineKind = 'llama-server' | 'embedded' | 'command';

export interface RunnerConfig {
  /**
   * The program that runs the model (engines/engine.ts). The daemon always sets it; absent means
   * the embedded runner (configs written before engines had a kind).
   */
  engine?: EngineKind;
  /** Absolute path of the GGUF file. */
  modelPath: string;
  /** Context size in tokens (never "auto": ENGINE-NOTES pitfall 3). */
  contextSize: number;
  /** Parallel sequences in the context. Defaults to 1. */
  parallel: number;
  /** CPU threads (ENGINE-NOTES pitfall 1: never more than the cores). */
  threads: number;
  /** Logical batch size in tokens. */
  batchSize: number;
  /** Flash attention on or off. A quantised V cache requires it on. */
  flashAttention: boolean;
  kvCacheKeyType: KvCacheType;
  kvCacheValueType: KvCacheType;
  /** Memory-map the weights (file-backed, reclaimable) instead of reading them into anonymous memory. */
  mmap: boolean;
  /** Layers to offload to a GPU; 0 on CPU-only machines. */
  gpuLayers: number;
  /**
   * A runner that serves embeddings. llama-server serves /v1/embeddings only when started with
   * --embeddings (chat still works); the embedded runner serves both either way.
   */
  embeddings?: boolean;
  /**
   * For the command engine: the server to run (argv with `${PORT}`, `${HOST}` and `${MODEL}` filled
   * in), the path that answers 200 once it is ready, and what it is known to take (bytes), since
   * no model file tells.
   */
  command?: { argv: string[]; health: string; memoryBytes?: number };
}

/** GET /stats of a runner. Bytes unless named otherwise. */
export interface RunnerStats {
  rss: number;
  rssAnon: number;
  peakRss: number;
  modelBytes: number;
  contextBytes: number;
  contextSize: number;
  kvCacheKeyType: KvCacheType;
  kvCacheValueType: KvCacheType;
  tokensInUse: number;
  /** Parallel slots (sequences) of the context. */
  parallel: number;
  /** Requests decoding or evaluating their prompt now. */
  busy: number;
  /** Requests waiting for a free slot. */
  queued: number;
  /** Tokens generated since start, over all requests. */
  generated: number;
  /** Requests started since start. */
  requests: number;
  /** Young-generation collections run to free node-llama-cpp's sampler garbage (native-garbage.ts). */
  gcCollections?: number;
  /** Of those, full collections (after evaluation calls that overlapped). */
  gcMajorCollections?: number;
}

/** Messages a runner sends its parent over the IPC channel. */
export type RunnerMessage =
  | { type: 'listening'; port: number }
  | { type: 'ready'; loadMs: number }
  | { type: 'error'; code: string; message: string };
