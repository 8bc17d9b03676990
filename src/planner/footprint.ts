/**
 * The footprint model: ModelSpec + PlanConfig → the bytes a runner process will hold at its peak,
 * with its context full. Pure and synchronous (no file, no native call), so it runs in tests, in
 * the fit search (thousands of calls) and in `headroom plan` without a daemon.
 *
 * How llama.cpp (as bundled with node-llama-cpp 3.22.1) spends memory on a CPU, and so the terms:
 * - weights: the tensor bytes. With mmap they are file-backed pages of the GGUF file (shared,
 *   reclaimable, but resident once inference has touched them); without mmap they are read into
 *   anonymous memory. On x86 with AVX2, Q4_0/Q4_K/IQ4_NL/MXFP4 tensors are repacked into
 *   anonymous buffers even with mmap (ggml-cpu "repack" buffer type); not measured here (the
 *   forge writes no Q4 types).
 * - kvCache: per layer, n_ctx cells × n_head_kv × (head_dim_k × bytes(K) + head_dim_v × bytes(V)),
 *   q8_0 = 34/32 and q4_0 = 18/32 bytes per element. n_ctx is what node-llama-cpp and llama.cpp
 *   make of the request: pad256(contextSize × parallel), then per sequence pad256(n_ctx / parallel).
 *   Layers with a sliding window (ModelSpec.slidingWindowLayers) hold pad256(window + n_ubatch)
 *   cells per sequence instead, at most n_ctx's (llama_kv_cache_iswa, without --swa-full); on
 *   llama-server each slot also keeps context checkpoints of that part (window + 1 cells each).
 *   Recurrent layers (ModelSpec.recurrentLayers) hold no KV cache but one f32 state per sequence
 *   (ModelSpec.recurrentStateBytes), which llama-server's checkpoints copy too.
 *   It is cleared at creation, so it is resident from the start.
 * - compute: the part of llama.cpp's graph buffer that a full-context prompt batch touches (the
 *   buffer itself is reserved for n_ubatch outputs of logits, which a runner never produces), the
 *   CPU backend's work buffer (src1 conversions of matrix products; with flash attention off, the
 *   f16 copy of the n_kv × n_ubatch × n_head attention matrix), with flash attention off the heap
 *   glibc keeps as that work buffer grows (`allocatorSlack`), and an empirical term for wider
 *   models (`modelExtra`, see FOOTPRINT_CONSTANTS). With flash attention off the
 *   attention matrix (f32) and its work copy grow as the context fills: this is why the peak lies
 *   far above the first-token value (ENGINE-NOTES "Memory"), and why predictions are for the
 *   context full.
 * - overhead: the runner's runtime (Node.js, node-llama-cpp, the llama.cpp libraries: resident
 *   before any model), the model's host-side structures (vocabulary, metadata), which grow with
 *   the vocabulary, and the runtime's growth while it evaluates a long prompt (`runtimeGrowth`).
 *
 * Why our own terms and not node-llama-cpp's estimators: `estimateContextResourceRequirementsV2`
 * gives what llama.cpp *allocates* for a context, exactly (ENGINE-NOTES). On a CPU most of the
 * compute allocation is never touched (it is sized for n_ubatch rows of logits), so RSS follows
 * the touched part modelled here; the KV cache term equals the estimator's. It also needs a loaded
 * `Llama` and the file's GgufInsights, while this model must stay pure. GPU terms (allocated, not
 * paged) are where the estimator would be exact; they are modelled from the layer split here and
 * unmeasured (no GPU on the calibration machine).
 *
 * The constants were calibrated on forged llama models (20M–1B parameters) against the measured
 * peak RSS of real embedded runners filling their context (bench/planner-accuracy.mjs,
 * docs/benchmarks/planner.md). Run-to-run noise of one runner is about ±4 MiB (V8's heap). GPU offload is
 * modelled from llama.cpp's layer split, not measured (no GPU on the calibration machine).
 */
import { HeadroomError } from '../lib/errors.js';
import type { ModelSpec } from '../gguf/types.js';

/** KV cache element type (same names as RunnerConfig's). */
export type KvCacheType = 'f16' | 'q8_0' | 'q4_0';

export interface PlanConfig {
  /** Context size in tokens, per sequence (node-llama-cpp's `contextSize`). */
  contextSize: number;
  /** Parallel sequences (slots); each gets `contextSize` cells. */
  parallel: number;
  /** Logical batch size in tokens. */
  batchSize: number;
  /** Physical batch size; node-llama-cpp always sets it to `batchSize`. Defaults to `batchSize`. */
  ubatchSize?: number;
  /**
   * Tokens per sequence the runner evaluates in one step while reading a prompt. The graph buffer
   * is reserved for a full ubatch, but only the part a step uses becomes resident, so the peak
   * follows min(ubatch, parallel × promptChunk) tokens (see promptTurns). The embedded runner evaluates prompts in
   * chunks of 64 (engines/embedded PROMPT_CHUNK_TOKENS). Defaults to the batch size (whole
   * batches: the upper bound).
   */
  promptChunk?: number;
  /**
   * Prompt chunks of different slots are evaluated one at a time (the embedded runner: overlapping
   * node-llama-cpp calls leak, engines/embedded/native-garbage.ts), so the largest step is one
   * chunk plus a decoded token for each other slot, not a chunk per slot. Defaults to false.
   */
  promptTurns?: boolean;
  /**
   * Bytes of attention scores (KQ, f32) one prompt step may touch with flash attention off and the
   * graph on the CPU: the embedded runner shrinks its chunks to keep under it (ATTENTION_SCRATCH_CAP,
   * engines/embedded; DEFAULT_ATTENTION_CAP here). Leave it out for an engine without that cap (no limit).
   */
  attentionCap?: number;
  /** Flash attention. A quantised V cache forces it on (as the runner does). */
  flashAttention: boolean;
  kvCacheKeyType: KvCacheType;
  kvCacheValueType: KvCacheType;
  /** Layers offloaded to a GPU (layers + 1 puts the output layer there too). 0 on CPU-only machines. */
  gpuLayers: number;
  /** Memory-map the weights. */
  mmap: boolean;
}

export interface Footprint {
  /** Weight bytes (all devices). */
  weights: number;
  /** KV cache bytes (all devices). */
  kvCache: number;
  /** Compute buffers, work buffer and allocator slack at the peak (all devices). */
  compute: number;
  /** Runtime and model host structures. */
  overhead: number;
  /** Predicted peak resident set (RSS) of the runner process with its context full: RAM only. */
  total: number;
  /** RAM split by kind: file-backed pages (mmapped weights, libraries) are reclaimable and shared. */
  byKind: { anonymous: number; fileBacked: number };
  /** `ram` equals `total`; `gpus[0]` holds what is offloaded (empty when gpuLayers is 0). */
  byDevice: { ram: number; gpus: number[] };
  /** The finer terms, for tables, logs and pinning tests. */
  terms: FootprintTerms;
}

export interface FootprintTerms {
  /** KV cells over all sequences after llama.cpp's padding. */
  contextCells: number;
  /** KV cells over all sequences of the sliding-window layers (contextCells when there are none). */
  windowCells: number;
  /** Recurrent state of all sequences (ModelSpec.recurrentStateBytes × parallel), in kvCache. */
  recurrentState: number;
  /** Weights resident as file-backed pages / in anonymous memory / on the GPU. */
  weightsFile: number;
  weightsAnon: number;
  weightsGpu: number;
  /** Part of the graph buffer touched at the peak (RAM). */
  computeGraph: number;
  /** CPU backend work buffer at the peak. */
  computeWork: number;
  /** Heap glibc keeps resident as the work buffer grows with the context (flash attention off). */
  allocatorSlack: number;
  /** Empirical anonymous memory of wider models (see FOOTPRINT_CONSTANTS.modelExtraMax). */
  modelExtra: number;
  /** Runtime growth while the context fills (see FOOTPRINT_CONSTANTS.growthPerCell). */
  runtimeGrowth: number;
  /** Output (logits) buffer. */
  outputBuffer: number;
  /** Node.js + node-llama-cpp + llama.cpp before a model: anonymous, file-backed. */
  runtimeAnon: number;
  runtimeFile: number;
  /** Vocabulary, metadata and loader heap of the model. */
  modelHost: number;
  /** The KV cache's per-cell bookkeeping on the host (FOOTPRINT_CONSTANTS.kvCellHost). */
  kvCellHost: number;
  /**
   * Context checkpoints of a sliding-window model's window cache and a recurrent model's state
   * (FootprintProfile.contextCheckpoints).
   */
  contextCheckpoints: number;
  /** Copies of the sequences' token arrays awaiting V8 (FOOTPRINT_CONSTANTS.tokenGarbageMax). */
  tokenGarbage: number;
  /** The runner's own per-slot state: request, token copies, sampler (FootprintProfile.slot*). */
  slotHost: number;
}

export interface FootprintOptions {
  /**
   * The CPU repacks Q4_0/Q4_K/IQ4_NL/MXFP4 weights into anonymous memory (x86-64 with AVX2, the
   * usual case). Defaults to true.
   */
  cpuRepack?: boolean;
  /** The program the runner is: which FOOTPRINT_PROFILES entry prices it. Defaults to 'embedded'. */
  engine?: FootprintEngine;
}

/** A spec or config the model cannot be computed for (HTTP 400). */
export class PlanError extends HeadroomError {
  override readonly name = 'PlanError';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('PLAN_INVALID_INPUT', message, { status: 400, details });
  }
}

const MiB = 1024 * 1024;

/** Calibrated constants (bytes); see the module comment. */
export const FOOTPRINT_CONSTANTS = {
  /**
   * Anonymous memory of the embedded runner besides its model: Node.js, its modules, the HTTP
   * server and the V8 heap. Small because the runner pins V8's young generation at 1 MiB
   * (`--max-semi-space-size=1`; 54.5 MiB without) and keeps its old generation within 10 % of its
   * live size (`--heap-growing-percent=10`). Fitted with `modelHostPerToken` and `tokenGarbage*`
   * on 32 measured cases (the quick matrix without its 32768 case, the long and the held-out
   * matrices): median error 0.80 %, max 3.16 %.
   */
  runtimeAnon: 30.5 * MiB,
  /** File-backed pages (node, libllama, ggml) of a runner before it loads a model. */
  runtimeFile: 51.5 * MiB,
  /** Model host structures: fixed part … */
  modelHostBase: 9 * MiB,
  /**
   * … and per vocabulary entry (token text, maps, scores). Fitted on vocabularies of 8k–128k
   * (500 bytes, fitted on 8k–32k alone, over-predicted the 128k shape by 8–10 %; so that shape no
   * longer checks this term out of sample).
   */
  modelHostPerToken: 340,
  /** Graph tensors of width n_embd alive beside the largest phase (residual, norms, projections). */
  embdTensors: 4,
  /**
   * Host bookkeeping of the KV cache per filled cell (llama_kv_cells: a std::map node per position
   * and sequence, ~48 bytes with malloc's header, plus the pos/shift/seq vectors, 16 bytes):
   * heaptrack, 2-layer runner at 16384 cells, 0.92 MiB from llama_kv_cache::apply_ubatch alone.
   */
  kvCellHost: 64,
  /**
   * node-llama-cpp replaces a sequence's token array with a copy on every evaluation call (8
   * bytes a token in context), so reading n tokens in 64-token chunks leaves n² / 16 bytes of
   * garbage in V8's old generation, which V8 collects in steps (the runner lets it grow 10 % or
   * V8's 8 MB step past the live heap: engines/embedded). Resident at the peak, fitted on the
   * 2-layer shape (16384 and 32768 cells, flash attention on and off; the three 32768-cell runs
   * spread over 7.6 MiB, so this is their middle, not a bound):
   * `tokenGarbageAt32k` × (cells per sequence / 32768)² per sequence, at most `tokenGarbageMax`.
   */
  tokenGarbageAt32k: 6 * MiB,
  tokenGarbageMax: 6 * MiB,
  /**
   * Anonymous memory a runner gains while it evaluates a long prompt: `growthPerCell` per KV cell
   * filled beyond `growthFrom`, at most `growthMax` (~1 KiB per cell, at most 16 MiB, on runners
   * that left sampler garbage to V8 and let its young generation grow).
   */
  growthPerCell: 1024,
  growthFrom: 2048,
  // 0 since the runner collects node-llama-cpp's per-call sampler arrays as it reads
  // (engines/embedded/native-garbage.ts): they were most of this growth. With V8's young
  // generation pinned, a 2-layer, n_embd-128 model still held ~13 MiB more after 16384- and
  // 32768-cell prompts than the terms explain, but other shapes at 16384 cells did not (128k
  // vocabulary +3.9 %, wide feed-forward −0.3 % without a growth term; +7.9 % / +5.1 % with one
  // fitted on the small model), so no term: docs/benchmarks/planner.md.
  growthMax: 0,
  /**
   * Allocator slack with flash attention off. The CPU backend's work buffer (the f16 copy of the
   * attention matrix) is reallocated each time it grows with the filled context; glibc's dynamic
   * mmap threshold then keeps freed heap resident, up to its trim threshold (at most 2 × 32 MiB).
   * Measured on real runners: none with a work buffer of 12 MiB (20M, 8192 cells), 41 MiB with
   * 48 MiB (20M, 32768 cells). Modelled as linear between those points, at most `slackMax`.
   */
  slackFrom: 12 * MiB,
  slackPerByte: 41 / 36,
  // 0 since the runner starts with a fixed glibc mmap threshold of 1 MiB (engines/embedded
  // runnerEnv): buffers that large are unmapped when freed, so no freed heap stays resident.
  slackMax: 0,
  /**
   * Runners of the 150M and 1B models (n_embd 1024, 2048) held ~10 MiB more anonymous memory than
   * the terms above explain, runners of the 20M model (n_embd 384) none (least squares over the
   * bench; spread ±5 MiB, less with F16 weights and flash attention off); its origin inside
   * llama.cpp or glibc is not identified. Modelled as a ramp on n_embd: 0 up to `modelExtraFrom`,
   * `modelExtraMax` from `modelExtraTo` on. Bounded, so it cannot mislead on large models.
   */
  // 0 since the runner collects sampler garbage (see growthMax): the ~10 MiB scaled with the
  // vocabulary (16k, 32k) of those models, not with n_embd. Re-measured: 150M, 2048 cells,
  // flash attention off: +3.5 % with it, +1.2 % without.
  modelExtraMax: 0,
  modelExtraFrom: 512,
  modelExtraTo: 1024,
  /**
   * Runners with more than two slots held more anonymous memory than the terms explain, with
   * every slot filled at once (demo shape, 4 slots: 15 MiB at 4096 and 8192 cells, 33 at 16384),
   * and were charged 7.5 MiB per slot beyond two. The cause: samplers of overlapping
   * node-llama-cpp calls that were never finalized (engines/embedded/native-garbage.ts). The
   * runner's prompt chunks now take turns (PlanConfig.promptTurns) and the excess is gone
   * (4 × 2048: 181.5 MiB filled at once, 179.8 one by one), so 0.
   */
  slotExtra: 0,
} as const;

/**
 * The runner programs the planner prices (the engines' kinds, engines/types.ts EngineKind; not
 * imported: the planner is pure and never imports an engine).
 */
export type FootprintEngine = 'embedded' | 'llama-server';

export const FOOTPRINT_ENGINES: readonly FootprintEngine[] = ['embedded', 'llama-server'];

/**
 * What one engine's runner holds besides llama.cpp's own buffers (weights, KV cache, compute,
 * output), which are the same library in both and priced by the same terms. Bytes.
 */
export interface FootprintProfile {
  /** Anonymous memory of the runner process before it loads a model. */
  runtimeAnon: number;
  /** File-backed pages of the runner's program and libraries before it loads a model. */
  runtimeFile: number;
  /** Host structures of a loaded model: fixed part, and per vocabulary entry. */
  modelHostBase: number;
  modelHostPerToken: number;
  /** KV cache bookkeeping per filled cell (llama_kv_cells). */
  kvCellHost: number;
  /** V8's uncollected token-array copies (FOOTPRINT_CONSTANTS.tokenGarbage*) apply. */
  tokenGarbage: boolean;
  /** Per slot: the runner's fixed state of a slot and its request. */
  slotBase: number;
  /** Per slot and vocabulary entry: the sampler's candidate array. */
  slotPerToken: number;
  /** Per slot and cell of its context: the runner's copies of the slot's tokens. */
  slotPerCell: number;
  /**
   * Graph tensors of width n_embd alive beside the largest phase of a prompt step, with flash
   * attention on and off (FOOTPRINT_CONSTANTS.embdTensors for the embedded runner).
   */
  embdTensors: { flashAttentionOn: number; flashAttentionOff: number };
  /**
   * How the runner evaluates a prompt (PlanConfig's promptChunk, promptTurns, attentionCap when a
   * plan leaves them out: planLoad's defaults): tokens per sequence and step (undefined: whole
   * batches), whether slots take turns, the cap on one step's attention scores (undefined: none).
   */
  prompt: { chunk?: number; turns: boolean; attentionCap?: number };
  /** Tokens the runner adds to the batch for a sliding-window cache's size (node-llama-cpp: 1). */
  swaBatchExtra: number;
  /**
   * Context checkpoints a slot keeps of a sliding-window model's window part and of a recurrent
   * model's state (llama-server's `--ctx-checkpoints`, which engines/llama-server passes; 0: none),
   * each of window + 1 cells and the whole state.
   */
  contextCheckpoints: number;
}

/**
 * The footprint profile of each engine's runner.
 *
 * embedded: node-llama-cpp in a Node.js process (FOOTPRINT_CONSTANTS, unchanged by the profiles).
 *
 * llama-server: llama.cpp's own server, one process per model (engines/llama-server), as built from
 * the llama.cpp node-llama-cpp 3.22.1 bundles. Its constants were fitted on the training matrix of
 * bench/planner-accuracy.mjs `--engine llama-server` (the 20M and 150M shapes, 2048–8192 cells per
 * slot, 1–4 slots, and two 8-slot runs of the 20M shape) and checked on held-out shapes up to
 * 32768 cells and 8 slots (docs/benchmarks/planner.md, "llama-server profile"). What differs from
 * the embedded runner:
 * - no JavaScript runtime: before a model the process holds a few MiB of heap and thread stacks,
 *   and the file-backed pages of its program and libraries (the static binary measured here, or
 *   libllama/libggml: a build with shared libraries maps other pages);
 * - prompts are read in whole batches of up to n_batch tokens shared by the slots with prompt left
 *   (tools/server update_slots), with no cap on the attention scores and no turns: a step's
 *   compute graph is the whole ubatch, as llama.cpp reserves it;
 * - no V8, so no token-array garbage;
 * - per slot: its sampler chain (common_sampler: a candidate array of n_vocab llama_token_data,
 *   12 bytes each) and its fixed state, and per cell the slot's and its request's copies of the
 *   prompt (text, tokens) beside the KV cells' fixed vectors.
 */
export const FOOTPRINT_PROFILES: Readonly<Record<FootprintEngine, Readonly<FootprintProfile>>> = {
  embedded: {
    runtimeAnon: FOOTPRINT_CONSTANTS.runtimeAnon,
    runtimeFile: FOOTPRINT_CONSTANTS.runtimeFile,
    modelHostBase: FOOTPRINT_CONSTANTS.modelHostBase,
    modelHostPerToken: FOOTPRINT_CONSTANTS.modelHostPerToken,
    kvCellHost: FOOTPRINT_CONSTANTS.kvCellHost,
    tokenGarbage: true,
    slotBase: 0,
    slotPerToken: 0,
    slotPerCell: 0,
    embdTensors: {
      flashAttentionOn: FOOTPRINT_CONSTANTS.embdTensors,
      flashAttentionOff: FOOTPRINT_CONSTANTS.embdTensors,
    },
    // engines/embedded PROMPT_CHUNK_TOKENS and ATTENTION_SCRATCH_CAP (not imported: planner is pure).
    prompt: { chunk: 64, turns: true, attentionCap: 8 * MiB },
    swaBatchExtra: 1,
    contextCheckpoints: 0,
  },
  'llama-server': {
    // Heap, thread stacks and the model-independent part of the host structures, fitted so that
    // no training case is predicted low: 3.6–3.7 MiB at load in every training case (less the KV
    // cache, vocabulary, slots and cells), the rest comes with serving requests (HTTP threads,
    // request and response buffers).
    runtimeAnon: 5.5 * MiB,
    // RssFile less the model's mapped weights: 11.6–12.0 MiB over the training cases with a static
    // llama-server binary; the one npm install builds links node-llama-cpp's shared ggml/llama
    // libraries and maps 2.3 MiB more (15M model, 1024 cells: RssFile 43.7 against 41.5 MiB).
    runtimeFile: 14.2 * MiB,
    modelHostBase: 0,
    // Anonymous memory at load, less the KV cache, grows 1.44 MiB from the 8192- to the
    // 16384-entry vocabulary of the training shapes (vocabulary text, maps and scores).
    modelHostPerToken: 184,
    // llama.cpp's own per-cell bookkeeping, as in the embedded runner (the same library).
    kvCellHost: FOOTPRINT_CONSTANTS.kvCellHost,
    tokenGarbage: false,
    // Anonymous memory at load grows ~78 KiB a slot beyond its output buffer (slot state, batch).
    slotBase: 78 * 1024,
    // sizeof(llama_token_data): the sampler's candidate array, one per slot serving a request.
    slotPerToken: 12,
    // Fitted: the KV cells' fixed vectors (~60 B a cell at load: positions, shifts, sequence
    // bitsets) and the prompt as the request, the slot and its cache hold it.
    slotPerCell: 180,
    // Fitted on the training cases: with flash attention on, llama.cpp's compute buffer holds
    // ~2.7 tensors of n_embd × n_tokens (f32) more than the embedded runner's 4 of its 64-token
    // steps; with it off the large attention scores leave room for fewer beside them.
    embdTensors: { flashAttentionOn: 5.5, flashAttentionOff: 3 },
    prompt: { turns: false },
    swaBatchExtra: 0,
    // engines/llama-server CONTEXT_CHECKPOINTS (not imported: the planner is pure).
    contextCheckpoints: 2,
  },
};

const KV_BYTES: Record<KvCacheType, number> = { f16: 2, q8_0: 34 / 32, q4_0: 18 / 32 };

/** Bytes per element of the type ggml converts activations to before multiplying with weights of each type. */
function vecDotBytes(weightType: string): number {
  const t = weightType.toUpperCase();
  if (t === 'F32') return 0;
  if (t === 'F16' || t === 'BF16') return 2;
  if (/_K$|^IQ[0-9]_(XXS|XS|S|M)$|^Q[2-6]_K/.test(t)) return 292 / 256; // q8_K
  return 34 / 32; // q8_0 (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, MXFP4, …)
}

/** Types the x86 AVX2 CPU backend repacks into its own anonymous buffers. */
const REPACKED_TYPES = new Set(['Q4_0', 'Q4_K', 'IQ4_NL', 'MXFP4']);

function pad(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

function checkInt(name: string, v: unknown, min: number): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new PlanError(`${name} must be an integer of at least ${min}, got ${String(v)}`, {
      param: name,
    });
  }
}

function checkKv(name: string, v: unknown): void {
  if (v !== 'f16' && v !== 'q8_0' && v !== 'q4_0') {
    throw new PlanError(`${name} must be f16, q8_0 or q4_0, got ${String(v)}`, { param: name });
  }
}

/** Throws PlanError when the spec lacks what the model needs or the config is out of range. */
export function validatePlanInput(spec: ModelSpec, config: PlanConfig): void {
  checkInt('spec.layers', spec.layers, 1);
  checkInt('spec.embeddingSize', spec.embeddingSize, 1);
  checkInt('spec.vocabSize', spec.vocabSize, 0);
  checkInt('spec.headCount', spec.headCount, 0);
  checkInt('spec.headCountKv', spec.headCountKv, 0);
  if (!Number.isFinite(spec.tensorBytes) || spec.tensorBytes < 0)
    throw new PlanError(`spec.tensorBytes must be a non-negative number, got ${spec.tensorBytes}`);
  checkInt('contextSize', config.contextSize, 1);
  checkInt('parallel', config.parallel, 1);
  checkInt('batchSize', config.batchSize, 1);
  if (config.ubatchSize !== undefined) checkInt('ubatchSize', config.ubatchSize, 1);
  if (config.promptChunk !== undefined) checkInt('promptChunk', config.promptChunk, 1);
  if (config.attentionCap !== undefined) checkInt('attentionCap', config.attentionCap, 1);
  checkInt('gpuLayers', config.gpuLayers, 0);
  checkKv('kvCacheKeyType', config.kvCacheKeyType);
  checkKv('kvCacheValueType', config.kvCacheValueType);
  if (config.contextSize * config.parallel > 1 << 26) {
    throw new PlanError(
      `contextSize × parallel = ${config.contextSize * config.parallel} cells is beyond any model (at most ${1 << 26})`,
      { param: 'contextSize' },
    );
  }
}

/** The weight type with the most bytes among the non-F32 tensors (F32 when there is none). */
export function dominantWeightType(spec: ModelSpec): string {
  let best = 'F32';
  let bytes = -1;
  for (const [type, b] of Object.entries(spec.bytesByType)) {
    if (type.toUpperCase() === 'F32') continue;
    if (b > bytes) {
      best = type;
      bytes = b;
    }
  }
  return best;
}

/** KV cells llama.cpp allocates: [cells per sequence, cells over all sequences]. */
export function contextCells(
  contextSize: number,
  parallel: number,
): [perSequence: number, total: number] {
  // node-llama-cpp pads contextSize × sequences to 256; llama.cpp splits per sequence and pads again.
  const nCtx = pad(contextSize * parallel, 256);
  const perSeq = pad(Math.floor(nCtx / parallel), 256);
  return [perSeq, perSeq * parallel];
}

/** KV cache bytes per cell, summed over layers. */
export function kvBytesPerCell(
  spec: ModelSpec,
  keyType: KvCacheType,
  valueType: KvCacheType,
): number {
  const { whole, window } = kvBytesPerCellByCache(spec, keyType, valueType);
  return whole + window;
}

/**
 * KV cache bytes per cell of the layers with a whole-context cache and of those with a
 * sliding-window cache (ModelSpec.slidingWindowLayers; llama.cpp's llama_kv_cache_iswa).
 */
export function kvBytesPerCellByCache(
  spec: ModelSpec,
  keyType: KvCacheType,
  valueType: KvCacheType,
): { whole: number; window: number } {
  const perLayerHeads =
    spec.headCountKvPerLayer && spec.headCountKvPerLayer.length > 0
      ? spec.headCountKvPerLayer
      : new Array<number>(spec.layers).fill(spec.headCountKv);
  const out = { whole: 0, window: 0 };
  perLayerHeads.forEach((heads, layer) => {
    // A recurrent layer keeps a state instead (ModelSpec.recurrentStateBytes).
    if (spec.recurrentLayers?.[layer] === true) return;
    const bytes =
      heads * spec.headDimK * KV_BYTES[keyType] + heads * spec.headDimV * KV_BYTES[valueType];
    if (spec.slidingWindowLayers?.[layer] === true) out.window += bytes;
    else out.whole += bytes;
  });
  return out;
}

/**
 * Cells per sequence of a sliding-window cache (llama_kv_cache_iswa, one stream per sequence):
 * the window and a batch, padded to 256, at most the whole cache's.
 */
export function windowCells(cellsPerSeq: number, window: number, ubatch: number): number {
  return Math.min(cellsPerSeq, pad(window + ubatch, 256));
}

/**
 * Predicts the footprint of `config` for `spec` (see the module comment). Throws PlanError on a
 * spec or config out of range; a quantised V cache implies flash attention on.
 */
export function predictFootprint(
  spec: ModelSpec,
  config: PlanConfig,
  options: FootprintOptions = {},
): Footprint {
  validatePlanInput(spec, config);
  const C = FOOTPRINT_CONSTANTS;
  const P = footprintProfile(options.engine);
  const fa = config.flashAttention || config.kvCacheValueType !== 'f16';
  const [cellsPerSeq, cells] = contextCells(config.contextSize, config.parallel);
  // llama.cpp: n_batch = min(n_ctx, batch) (causal attention); n_ubatch = min(n_batch, ubatch); the
  // worst-case graph has n_tokens = min(n_ctx, n_ubatch), and at least one token per sequence.
  const nBatch = Math.min(cells, Math.max(config.batchSize, config.parallel));
  const ubatch = Math.min(nBatch, config.ubatchSize ?? nBatch);
  // Tokens of the largest step actually evaluated: what the touched compute terms scale with.
  const chunk = config.promptChunk ?? ubatch;
  const stepTokens =
    config.promptTurns === true ? chunk + config.parallel - 1 : config.parallel * chunk;
  const T = Math.min(ubatch, stepTokens);

  const E = spec.embeddingSize;
  const F = spec.feedForwardSize > 0 ? spec.feedForwardSize : 4 * E;
  const H = spec.headCount;
  const L = spec.layers;

  // ---- GPU split (llama.cpp: the last gpuLayers repeating layers, the output layer when gpuLayers > L).
  const gpuRepeating = Math.min(config.gpuLayers, L);
  const gpuFraction = gpuRepeating / L;
  const outputOnGpu = config.gpuLayers > L;

  // ---- weights
  const embdBytes = spec.vocabSize * E * (bytesPerWeight(spec) || 2);
  const repeatingBytes = Math.max(0, spec.tensorBytes - embdBytes * (outputOnGpu ? 1 : 2));
  const weightsGpu =
    config.gpuLayers > 0 ? repeatingBytes * gpuFraction + (outputOnGpu ? embdBytes : 0) : 0;
  const weightsRam = spec.tensorBytes - weightsGpu;
  const repackable = options.cpuRepack ?? true;
  let repacked = 0;
  if (repackable) {
    for (const [type, b] of Object.entries(spec.bytesByType))
      if (REPACKED_TYPES.has(type.toUpperCase())) repacked += b;
    repacked *= weightsRam / Math.max(1, spec.tensorBytes);
  }
  // Repacked tensors are copied into anonymous buffers. Their file pages were read once during the
  // load and stay mapped but are clean and never touched again: the kernel reclaims them first, so
  // they are not counted (the RSS right after loading is higher by up to their size).
  const weightsFile = config.mmap ? weightsRam - repacked : 0;
  const weightsAnon = config.mmap ? repacked : weightsRam;

  // ---- KV cache: whole-context layers hold every cell; sliding-window layers the window and a
  // batch, and llama-server keeps up to contextCheckpoints copies of that part per slot.
  const perCell = kvBytesPerCellByCache(spec, config.kvCacheKeyType, config.kvCacheValueType);
  const swaCellsPerSeq =
    perCell.window > 0 && spec.slidingWindow !== undefined
      ? windowCells(cellsPerSeq, spec.slidingWindow, ubatch + P.swaBatchExtra)
      : cellsPerSeq;
  const swaCells = swaCellsPerSeq * config.parallel;
  // Recurrent layers: one state per sequence (llama_memory_recurrent, f32), whatever the context.
  const recurrentPerSeq = spec.recurrentStateBytes ?? 0;
  const kvTotal =
    cells * perCell.whole + swaCells * perCell.window + config.parallel * recurrentPerSeq;
  // A checkpoint holds the window's cells still inside it, window + 1 (measured, llama-server's
  // log), and the recurrent state.
  const checkpointCells = Math.min(swaCellsPerSeq, (spec.slidingWindow ?? 0) + 1);
  const checkpointBytes =
    (perCell.window > 0 ? checkpointCells * perCell.window : 0) + recurrentPerSeq;
  const checkpoints = P.contextCheckpoints * config.parallel * checkpointBytes;
  const kvGpu = kvTotal * gpuFraction;
  const kvRam = kvTotal - kvGpu;

  // ---- compute: the graph buffer touched by a full-context batch of T tokens.
  const attention = H > 0 && spec.headCountKv > 0;
  // With flash attention off the scores (and the f32 mask) of a step span n_kv × tokens; a runner
  // with an attention cap shrinks its steps so the scores stay under it (CPU graph only).
  const kqFull = attention && !fa ? cellsPerSeq * T * H * 4 : 0;
  const kqBytes =
    config.attentionCap !== undefined && config.gpuLayers === 0
      ? Math.min(kqFull, config.attentionCap)
      : kqFull;
  const maskBytes = !attention ? 0 : fa ? cellsPerSeq * T * 2 : kqBytes / H;
  const ffnBytes = 2 * F * T * 4;
  const embdPhase =
    (fa ? P.embdTensors.flashAttentionOn : P.embdTensors.flashAttentionOff) * E * T * 4;
  const graph = maskBytes + Math.max(kqBytes, ffnBytes) + embdPhase;
  // Work buffer: the largest src1 conversion of a matrix product.
  const vdb = vecDotBytes(dominantWeightType(spec));
  const workFfn = F * T * vdb;
  const workKq = kqBytes / 2; // kq (f32) → f16 for the product with the f16 V cache
  // The CPU backend keeps one work buffer, grown to the largest conversion a graph needs: with
  // flash attention off that is the f16 copy of a step's scores, at most attentionCap / 2 with the
  // runner's cap. Runners on a slow CPU read prompts in chunks shorter than 64 tokens (their steps
  // are sized by time), so the copy is smaller there; a fast CPU reads full chunks up to the cap (the 2-layer long-context runner: a 4 MiB work buffer, fully
  // resident; heaptrack, /proc/PID/smaps). Counted as the upper bound: short flash-attention-off
  // cases here err high by 1–3 %, long ones no longer err low by 9 % (docs/benchmarks/planner.md).
  const work = Math.max(workFfn, workKq);
  const slack =
    fa || workKq <= C.slackFrom ? 0 : Math.min(C.slackMax, C.slackPerByte * (workKq - C.slackFrom));
  const modelExtra =
    C.modelExtraMax *
    Math.min(1, Math.max(0, (E - C.modelExtraFrom) / (C.modelExtraTo - C.modelExtraFrom)));
  const outputBuffer = spec.vocabSize * config.parallel * 4;
  // With layers offloaded the graph runs on the GPU; the CPU keeps the input and output parts.
  const computeGpu = config.gpuLayers > 0 ? (graph + outputBuffer) * gpuFraction : 0;
  const computeRam = graph + work + slack + modelExtra + outputBuffer - computeGpu;

  // ---- overhead
  const modelHost = P.modelHostBase + P.modelHostPerToken * spec.vocabSize;
  const runtimeGrowth =
    Math.min(C.growthMax, C.growthPerCell * Math.max(0, cells - C.growthFrom)) +
    C.slotExtra * Math.max(0, config.parallel - 2);
  const kvCellHost = P.kvCellHost * (perCell.window > 0 ? cells + swaCells : cells);
  const tokenGarbage = P.tokenGarbage
    ? Math.min(
        C.tokenGarbageMax,
        C.tokenGarbageAt32k * config.parallel * (cellsPerSeq / 32768) ** 2,
      )
    : 0;
  const slotHost =
    config.parallel * (P.slotBase + P.slotPerToken * spec.vocabSize) + P.slotPerCell * cells;
  const overhead =
    P.runtimeAnon +
    P.runtimeFile +
    modelHost +
    kvCellHost +
    tokenGarbage +
    slotHost +
    checkpoints +
    runtimeGrowth;

  const fileBacked = P.runtimeFile + weightsFile;
  const anonymous =
    P.runtimeAnon +
    runtimeGrowth +
    modelHost +
    kvCellHost +
    tokenGarbage +
    slotHost +
    checkpoints +
    weightsAnon +
    kvRam +
    computeRam;
  const total = fileBacked + anonymous;
  const gpuTotal = weightsGpu + kvGpu + computeGpu;
  const r = Math.round;
  return {
    weights: r(spec.tensorBytes),
    kvCache: r(kvTotal),
    compute: r(graph + work + slack + modelExtra + outputBuffer),
    overhead: r(overhead),
    total: r(total),
    byKind: { anonymous: r(anonymous), fileBacked: r(fileBacked) },
    byDevice: { ram: r(total), gpus: config.gpuLayers > 0 ? [r(gpuTotal)] : [] },
    terms: {
      contextCells: cells,
      windowCells: perCell.window > 0 ? swaCells : cells,
      recurrentState: r(config.parallel * recurrentPerSeq),
      weightsFile: r(weightsFile),
      weightsAnon: r(weightsAnon),
      weightsGpu: r(weightsGpu),
      computeGraph: r(graph),
      computeWork: r(work),
      allocatorSlack: r(slack),
      modelExtra: r(modelExtra),
      runtimeGrowth: r(runtimeGrowth),
      outputBuffer: r(outputBuffer),
      runtimeAnon: r(P.runtimeAnon),
      runtimeFile: r(P.runtimeFile),
      modelHost: r(modelHost),
      kvCellHost: r(kvCellHost),
      tokenGarbage: r(tokenGarbage),
      slotHost: r(slotHost),
      contextCheckpoints: r(checkpoints),
    },
  };
}

/** The profile of `engine` (undefined: the embedded runner). Throws PlanError on an unknown engine. */
export function footprintProfile(engine: FootprintEngine = 'embedded'): Readonly<FootprintProfile> {
  if (!Object.hasOwn(FOOTPRINT_PROFILES, engine))
    throw new PlanError(`engine must be ${FOOTPRINT_ENGINES.join(' or ')}, got ${String(engine)}`, {
      param: 'engine',
    });
  return FOOTPRINT_PROFILES[engine];
}

/** Average bytes per weight of the file (tensorBytes / parameterCount); 0 when unknown. */
export function bytesPerWeight(spec: ModelSpec): number {
  return spec.parameterCount > 0 ? spec.tensorBytes / spec.parameterCount : 0;
}
