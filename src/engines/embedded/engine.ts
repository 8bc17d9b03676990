/**
 * The embedded engine: one node-llama-cpp model and context inside a runner process, with a slot
 * (context sequence) per parallel request. It turns prompts into tokens, evaluates them in small
 * chunks so that an abort is seen within one chunk (ENGINE-NOTES.md pitfall 4), reuses the longest
 * evaluated prefix of a slot (pitfall 7: tokens are fed by us, never through LlamaCompletion), and
 * decodes token by token, awaiting the caller's sink so that a slow reader slows decoding.
 */
import {
  getLlama,
  resolveChatWrapper,
  type ChatHistoryItem,
  type ChatWrapper,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaEmbeddingContext,
  type LlamaModel,
  type Token,
} from 'node-llama-cpp';
import { throwIfAborted } from '../../lib/abort.js';
import { HeadroomError } from '../../lib/errors.js';
import { messageText, type ChatMessage } from '../openai.js';
import type { RunnerConfig } from '../types.js';
import { NativeGarbage } from './native-garbage.js';
import { StopMatcher } from './stop.js';

/** Prompt tokens evaluated between two abort checks (ENGINE-NOTES.md: 32–64 costs no speed). */
export const PROMPT_CHUNK_TOKENS = 64;

/**
 * The most attention-score bytes (n_kv × tokens × heads × 4) one prompt step touches with flash
 * attention off and the graph on the CPU (attentionChunkLimit). Without it the peak depended on
 * the machine's speed: chunks are sized by time, so a slow CPU evaluated 6–9-token chunks at 8192
 * cells where a fast one takes 64 (20M model, 8192 cells: 190 MiB against 205 with fixed 64-token
 * chunks). With the cap the chunk at full context is at most cap / (cells × heads × 4) tokens on
 * every machine, and the planner predicts the cap (planner DEFAULT_ATTENTION_CAP).
 */
export const ATTENTION_SCRATCH_CAP = 8 * 1024 * 1024;

/** How long one prompt chunk should take: a disconnect is seen between chunks (ENGINE-NOTES 4). */
export const PROMPT_CHUNK_TARGET_MS = 50;

/**
 * Sizes prompt chunks by time: as many tokens as take about PROMPT_CHUNK_TARGET_MS on this
 * machine and model, never more than PROMPT_CHUNK_TOKENS (the planner sizes compute buffers for
 * that) and never fewer than 4. The rate is a moving average over the chunks evaluated so far.
 */
export class ChunkSizer {
  #msPerToken: number | undefined;
  size(): number {
    if (this.#msPerToken === undefined) return 16;
    const n = Math.floor(PROMPT_CHUNK_TARGET_MS / this.#msPerToken);
    return Math.max(4, Math.min(PROMPT_CHUNK_TOKENS, n));
  }
  observe(tokens: number, ms: number): void {
    if (tokens <= 0 || !(ms >= 0)) return;
    const rate = ms / tokens;
    this.#msPerToken = this.#msPerToken === undefined ? rate : 0.7 * this.#msPerToken + 0.3 * rate;
  }
}

const KV_TYPE = { f16: 'F16', q8_0: 'Q8_0', q4_0: 'Q4_0' } as const;

export interface SamplingParams {
  maxTokens?: number | undefined;
  temperature: number;
  topP?: number | undefined;
  topK?: number | undefined;
  minP?: number | undefined;
  seed?: number | undefined;
  stop: readonly string[];
  ignoreEos: boolean;
}

export type FinishReason = 'stop' | 'length';

export interface GenerateResult {
  finishReason: FinishReason;
  promptTokens: number;
  /** Prompt tokens whose evaluation was reused from an earlier request on the slot. */
  cachedTokens: number;
  completionTokens: number;
  /** From the start of prompt evaluation to the first generated token. */
  ttftMs: number;
  totalMs: number;
}

/** Receives generated text; a returned promise is awaited before the next token (backpressure). */
export type TextSink = (text: string) => void | Promise<void>;

export class ContextOverflowError extends HeadroomError {
  override readonly name = 'ContextOverflowError';
  constructor(promptTokens: number, contextSize: number) {
    super(
      'context_length_exceeded',
      `the prompt is ${promptTokens} tokens but this model's context holds ${contextSize}: shorten the conversation or load the model with a larger context`,
      { status: 400, details: { param: 'messages', promptTokens, contextSize } },
    );
  }
}

interface Slot {
  sequence: LlamaContextSequence;
  busy: boolean;
}

interface Waiter {
  resolve: (slot: Slot) => void;
  reject: (err: unknown) => void;
  signal: AbortSignal;
  onAbort: () => void;
}

/** What Engine.trim() released. */
export interface TrimResult {
  /** What was freed: 'prompt-cache' (idle slots' cached tokens), 'embedding-context'. */
  released: string[];
  /** Cached prompt tokens forgotten over all idle slots. */
  forgottenTokens: number;
  /** Slots serving a request when the trim began, left alone. */
  busySlots: number;
}

export interface EngineCounters {
  busy: number;
  queued: number;
  /** Tokens generated since start, over all requests: lets a test see that decoding stopped. */
  generated: number;
  requests: number;
  /** Collections run to free node-llama-cpp's sampler garbage (native-garbage.ts). */
  gcCollections: number;
  /** Of those, full collections (after evaluation calls that overlapped). */
  gcMajorCollections: number;
}

export class Engine {
  readonly config: RunnerConfig;
  readonly loadMs: number;
  readonly #llama: Llama;
  readonly #model: LlamaModel;
  readonly #context: LlamaContext;
  readonly #chatWrapper: ChatWrapper;
  readonly #slots: Slot[];
  readonly #waiters: Waiter[] = [];
  #generated = 0;
  readonly #chunk = new ChunkSizer();
  /** Prompt chunks of different slots take turns (native-garbage.ts: overlapping calls leak). */
  #promptTurn: Promise<void> = Promise.resolve();
  /** Attention heads when the CPU computes full attention scores (flash attention off); else 0. */
  readonly #scoreHeads: number;
  /** Samplers node-llama-cpp leaves for the garbage collector (native-garbage.ts). */
  readonly #garbage: NativeGarbage;
  #embedding: Promise<LlamaEmbeddingContext> | undefined;
  /** Embedding calls under way: trim() never disposes the embedding context under one. */
  #embeddingUsers = 0;
  /** An embedding context trim() is disposing; dispose() waits for it. */
  #embeddingDisposal: Promise<void> | undefined;
  readonly #embeddingContextSize: number;
  readonly #threads: number;
  #requests = 0;
  #disposed: Promise<void> | undefined;

  private constructor(
    config: RunnerConfig,
    llama: Llama,
    model: LlamaModel,
    context: LlamaContext,
    loadMs: number,
  ) {
    this.config = config;
    this.#llama = llama;
    this.#model = model;
    this.#garbage = new NativeGarbage(vocabularySize(model));
    this.#embeddingContextSize = Math.min(config.contextSize, 2048);
    this.#threads = config.threads;
    this.#context = context;
    const fullScores =
      !config.flashAttention && config.kvCacheValueType === 'f16' && config.gpuLayers === 0;
    this.#scoreHeads = fullScores ? headCount(model) : 0;
    this.loadMs = loadMs;
    this.#chatWrapper = resolveChatWrapper(model);
    this.#slots = Array.from({ length: config.parallel }, () => ({
      sequence: context.getSequence(),
      busy: false,
    }));
  }

  static async create(config: RunnerConfig): Promise<Engine> {
    const started = performance.now();
    // Pitfalls 1 and 2: never build from source, never more threads than the machine has.
    const llama = await getLlama({
      build: 'never',
      gpu: config.gpuLayers > 0 ? 'auto' : false,
      maxThreads: config.threads,
      logLevel: 'warn' as never,
    });
    try {
      const model = await llama.loadModel({
        modelPath: config.modelPath,
        useMmap: config.mmap,
        gpuLayers: config.gpuLayers,
      });
      try {
        const quantisedV = config.kvCacheValueType !== 'f16';
        const context = await model.createContext({
          // Pitfall 3: an explicit size, never "auto" (which means the trained context).
          contextSize: config.contextSize,
          sequences: config.parallel,
          threads: config.threads,
          batchSize: config.batchSize,
          // Pitfall 5: a quantised V cache needs flash attention.
          flashAttention: config.flashAttention || quantisedV,
          experimentalKvCacheKeyType: KV_TYPE[config.kvCacheKeyType],
          experimentalKvCacheValueType: KV_TYPE[config.kvCacheValueType],
        });
        return new Engine(config, llama, model, context, performance.now() - started);
      } catch (err) {
        await model.dispose();
        throw err;
      }
    } catch (err) {
      await llama.dispose();
      throw err;
    }
  }

  get counters(): EngineCounters {
    return {
      busy: this.#slots.filter((s) => s.busy).length,
      queued: this.#waiters.length,
      generated: this.#generated,
      requests: this.#requests,
      gcCollections: this.#garbage.collections,
      gcMajorCollections: this.#garbage.majorCollections,
    };
  }

  /** The most tokens one prompt step may take at position `pos` (attentionChunkLimit). */
  #scoreChunk(pos: number): number {
    return attentionChunkLimit(
      pos,
      this.config.contextSize,
      this.config.parallel,
      this.#scoreHeads,
    );
  }

  get contextSize(): number {
    return this.#context.contextSize;
  }

  get modelBytes(): number {
    return this.#model.size;
  }

  /** Bytes llama.cpp allocated for the context (KV cache and compute buffers). */
  get contextBytes(): number {
    const internal = (
      this.#context as unknown as {
        _ctx?: { getMemoryBreakdown?: () => { cpuRam: number; gpuVram: number } };
      }
    )._ctx;
    const breakdown = internal?.getMemoryBreakdown?.();
    return breakdown ? breakdown.cpuRam + breakdown.gpuVram : this.#context.stateSize;
  }

  /** Tokens held in all slots' KV cache. */
  get tokensInUse(): number {
    return this.#slots.reduce((n, s) => n + s.sequence.nextTokenIndex, 0);
  }

  /**
   * Embedding vectors of `inputs`, one per input, from a separate embedding context created on
   * first use (generation keeps its own context and slots). Inputs are embedded one at a time;
   * the signal is checked between them. An input longer than the embedding context is a 400.
   */
  async embed(
    inputs: readonly string[],
    signal: AbortSignal,
  ): Promise<{ vectors: number[][]; tokens: number }> {
    const size = Math.min(this.#embeddingContextSize, this.#model.trainContextSize);
    // Counted before the first await, so that trim() sees this call as soon as it starts.
    this.#embeddingUsers++;
    try {
      this.#embedding ??= this.#model.createEmbeddingContext({
        contextSize: size,
        threads: this.#threads,
      });
      const ctx = await this.#embedding;
      const vectors: number[][] = [];
      let tokens = 0;
      for (const text of inputs) {
        throwIfAborted(signal);
        const t = this.#model.tokenize(text, false);
        if (t.length >= size) throw new ContextOverflowError(t.length, size);
        tokens += t.length;
        const e = await ctx.getEmbeddingFor(t);
        vectors.push([...e.vector]);
      }
      return { vectors, tokens };
    } finally {
      this.#embeddingUsers--;
    }
  }

  /**
   * Frees what the engine holds beyond serving the next request (the runner's POST /trim):
   *  - the embedding context, when no embedding call is using it (the next one makes it again);
   *  - the cached prompt tokens of idle slots (prefix reuse starts over on them).
   * Never disturbs a request: a busy slot and an embedding call under way are left alone, and an
   * idle slot is taken like a request while it is cleared (a request arriving meanwhile takes
   * another slot or waits the few milliseconds the clearing takes).
   *
   * Clearing a slot frees no memory by itself (llama.cpp allocates the whole KV cache with the
   * context); disposing the embedding context does, given a malloc that returns large blocks to
   * the system (index.ts sets glibc's mmap threshold for that). Disposing the main context and
   * making it again at the same size was measured and returns nothing: the new KV cache is
   * written (zeroed) when it is created.
   */
  async trim(): Promise<TrimResult> {
    const released: string[] = [];
    let forgottenTokens = 0;
    const busySlots = this.#slots.filter((s) => s.busy).length;
    if (this.#disposed) return { released, forgottenTokens, busySlots };
    const idle = this.#slots.filter((s) => !s.busy && s.sequence.nextTokenIndex > 0);
    for (const s of idle) s.busy = true;
    try {
      for (const s of idle) {
        forgottenTokens += s.sequence.nextTokenIndex;
        await s.sequence.clearHistory();
      }
    } finally {
      for (const s of idle) this.#release(s);
    }
    if (idle.length > 0) released.push('prompt-cache');
    const embedding = this.#embedding;
    if (embedding && this.#embeddingUsers === 0) {
      this.#embedding = undefined;
      const disposal = embedding.then(
        (ctx) => ctx.dispose(),
        () => undefined, // its creation failed: nothing to free
      );
      this.#embeddingDisposal = disposal;
      await disposal;
      if (this.#embeddingDisposal === disposal) this.#embeddingDisposal = undefined;
      released.push('embedding-context');
    }
    return { released, forgottenTokens, busySlots };
  }

  tokenize(text: string, opts: { special?: boolean; bos?: boolean } = {}): Token[] {
    const tokens = this.#model.tokenize(text, opts.special ?? false);
    const bos = this.#model.tokens.bos;
    return opts.bos && bos !== null && this.#model.tokens.shouldPrependBosToken
      ? [bos, ...tokens]
      : tokens;
  }

  detokenize(tokens: readonly number[]): string {
    return this.#model.detokenize(tokens as Token[], false);
  }

  /** The model's chat template applied to the messages, with the assistant's turn opened. */
  chatPrompt(messages: readonly ChatMessage[]): Token[] {
    const history: ChatHistoryItem[] = messages.map((m): ChatHistoryItem => {
      const text = messageText(m.content);
      if (m.role === 'system' || m.role === 'developer') return { type: 'system', text };
      if (m.role === 'assistant') return { type: 'model', response: [text] };
      return { type: 'user', text };
    });
    history.push({ type: 'model', response: [] });
    const { contextText } = this.#chatWrapper.generateContextState({ chatHistory: history });
    return contextText.tokenize(this.#model.tokenizer);
  }

  /** Tokens that end a chat turn for this template, beyond the model's end-of-generation tokens. */
  #chatStopTokens(): Set<number> {
    const stops = new Set<number>();
    const { stopGenerationTriggers } = this.#chatWrapper.generateContextState({
      chatHistory: [{ type: 'model', response: [] }],
    });
    for (const trigger of stopGenerationTriggers) {
      const tokens = trigger.tokenize(this.#model.tokenizer);
      if (tokens.length === 1 && tokens[0] !== undefined) stops.add(tokens[0]);
    }
    return stops;
  }

  /**
   * Generates a completion of `prompt` into `sink`. Resolves with the counts when done, stopped or
   * out of tokens; rejects with the abort reason when `signal` aborts (during queueing, prompt
   * evaluation or decoding), leaving the slot free.
   */
  async generate(
    prompt: readonly Token[],
    params: SamplingParams,
    sink: TextSink,
    signal: AbortSignal,
    opts: { chat?: boolean } = {},
  ): Promise<GenerateResult> {
    if (prompt.length === 0)
      throw new HeadroomError('invalid_request', 'the prompt is empty', {
        status: 400,
        details: { param: 'prompt' },
      });
    if (prompt.length >= this.contextSize)
      throw new ContextOverflowError(prompt.length, this.contextSize);
    const slot = await this.#acquire(prompt, signal);
    this.#requests++;
    const started = performance.now();
    try {
      const seq = slot.sequence;
      const cached = await this.#reusePrefix(seq, prompt);
      for (let i = cached; i < prompt.length - 1;) {
        throwIfAborted(signal);
        const n = Math.min(this.#chunk.size(), this.#scoreChunk(i), prompt.length - 1 - i);
        const previous = this.#promptTurn;
        let done!: () => void;
        this.#promptTurn = new Promise((resolve) => (done = resolve));
        let ms: number;
        try {
          await previous;
          throwIfAborted(signal);
          const t0 = performance.now();
          this.#garbage.started();
          try {
            await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(i, i + n) as Token[]);
          } finally {
            this.#garbage.evaluated();
          }
          ms = performance.now() - t0;
        } finally {
          done();
        }
        this.#chunk.observe(n, ms);
        i += n;
      }
      throwIfAborted(signal);
      // The generation makes one sampler too (node-llama-cpp's evaluate generator).
      this.#garbage.started();
      try {
        return await this.#decode(
          seq,
          prompt,
          cached,
          params,
          sink,
          signal,
          started,
          opts.chat === true,
        );
      } finally {
        this.#garbage.evaluated();
      }
    } finally {
      this.#release(slot);
    }
  }

  async #decode(
    seq: LlamaContextSequence,
    prompt: readonly Token[],
    cached: number,
    params: SamplingParams,
    sink: TextSink,
    signal: AbortSignal,
    started: number,
    chat: boolean,
  ): Promise<GenerateResult> {
    const stopTokens = chat ? this.#chatStopTokens() : new Set<number>();
    const stop = new StopMatcher(params.stop);
    const decoder = new TokenTextDecoder(this.#model);
    const limit = params.maxTokens ?? Number.POSITIVE_INFINITY;
    let completion = 0;
    let ttftMs = 0;
    let finishReason: FinishReason = 'length';
    const tokens = seq.evaluate([prompt[prompt.length - 1]!], {
      temperature: params.temperature,
      topK: params.topK,
      topP: params.topP,
      minP: params.minP,
      seed: params.seed,
    });
    for await (const token of tokens) {
      throwIfAborted(signal);
      if (completion === 0) ttftMs = performance.now() - started;
      if (!params.ignoreEos && (this.#model.isEogToken(token) || stopTokens.has(token))) {
        finishReason = 'stop';
        break;
      }
      completion++;
      this.#generated++;
      const out = stop.push(decoder.push(token));
      if (out.emit) await sink(out.emit);
      if (out.stopped) {
        finishReason = 'stop';
        break;
      }
      if (completion >= limit || seq.nextTokenIndex + 1 >= this.contextSize) break;
    }
    throwIfAborted(signal);
    if (finishReason === 'length') {
      const rest = stop.push(decoder.flush()).emit + stop.flush();
      if (rest) await sink(rest);
    }
    return {
      finishReason,
      promptTokens: prompt.length,
      cachedTokens: cached,
      completionTokens: completion,
      ttftMs,
      totalMs: performance.now() - started,
    };
  }

  /**
   * Keeps the slot's evaluated tokens that equal the start of the prompt and erases the rest.
   * At least the prompt's last token is evaluated again, since decoding starts from its logits.
   */
  async #reusePrefix(seq: LlamaContextSequence, prompt: readonly Token[]): Promise<number> {
    const keep = Math.min(commonPrefixLength(seq.contextTokens, prompt), prompt.length - 1);
    if (keep === 0) {
      if (seq.nextTokenIndex > 0) await seq.clearHistory();
    } else if (keep < seq.nextTokenIndex) {
      await seq.eraseContextTokenRanges([{ start: keep, end: seq.nextTokenIndex }]);
    }
    return keep;
  }

  #acquire(prompt: readonly Token[], signal: AbortSignal): Promise<Slot> {
    throwIfAborted(signal);
    const free = this.#slots.filter((s) => !s.busy);
    if (free.length > 0) {
      // The free slot that already holds most of this prompt.
      let best = free[0]!;
      let bestLen = -1;
      for (const s of free) {
        const n = commonPrefixLength(s.sequence.contextTokens, prompt);
        if (n > bestLen) [best, bestLen] = [s, n];
      }
      best.busy = true;
      return Promise.resolve(best);
    }
    return new Promise<Slot>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.#waiters.indexOf(waiter);
          if (i !== -1) this.#waiters.splice(i, 1);
          reject(signal.reason);
        },
      };
      signal.addEventListener('abort', waiter.onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  #release(slot: Slot): void {
    const next = this.#waiters.shift();
    if (next) {
      next.signal.removeEventListener('abort', next.onAbort);
      next.resolve(slot);
    } else {
      slot.busy = false;
    }
  }

  /** Each slot's id (its index), cached tokens, whether it serves a request, and its cells. */
  slotViews(): Array<{ id: number; tokens: number; busy: boolean; contextSize: number }> {
    return this.#slots.map((s, id) => ({
      id,
      tokens: s.sequence.nextTokenIndex,
      busy: s.busy,
      contextSize: this.contextSize,
    }));
  }

  /**
   * Writes an idle slot's sequence state (its tokens and KV cells) to `file`, streamed by
   * llama.cpp (llama_state_seq_save_file); the slot takes no request meanwhile. Rejects with a
   * 409 when the slot is serving one.
   */
  async saveSlot(id: number, file: string): Promise<{ tokens: number; bytes: number }> {
    const slot = this.#idleSlot(id);
    slot.busy = true;
    try {
      const tokens = slot.sequence.nextTokenIndex;
      const { fileSize } = await slot.sequence.saveStateToFile(file);
      return { tokens, bytes: fileSize };
    } finally {
      this.#release(slot);
    }
  }

  /**
   * Loads a state file into an idle slot, replacing what it held. The file must come from this
   * model and config (headroom's state cache keys and hashes it): llama.cpp checks the shape of
   * the cells but not where they came from. A failed load leaves the slot empty.
   */
  async restoreSlot(id: number, file: string): Promise<{ tokens: number }> {
    const slot = this.#idleSlot(id);
    slot.busy = true;
    try {
      await slot.sequence.loadStateFromFile(file, { acceptRisk: true });
      return { tokens: slot.sequence.nextTokenIndex };
    } catch (err) {
      await slot.sequence.clearHistory().catch(() => undefined);
      throw new HeadroomError('invalid_request', `the state file was refused: ${String(err)}`, {
        status: 400,
      });
    } finally {
      this.#release(slot);
    }
  }

  #idleSlot(id: number): Slot {
    const slot = this.#slots[id];
    if (!slot)
      throw new HeadroomError('invalid_request', `no slot ${id}`, {
        status: 400,
        details: { param: 'slot' },
      });
    if (slot.busy)
      throw new HeadroomError('invalid_request', `slot ${id} is serving a request`, {
        status: 409,
      });
    return slot;
  }

  /** Frees the context, the model and the backend. Idempotent. */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      for (const w of this.#waiters.splice(0)) {
        w.signal.removeEventListener('abort', w.onAbort);
        w.reject(
          new HeadroomError('runner_stopping', 'the runner is shutting down', { status: 503 }),
        );
      }
      await this.#embeddingDisposal;
      await (await this.#embedding?.catch(() => undefined))?.dispose();
      await this.#context.dispose();
      await this.#model.dispose();
      await this.#llama.dispose();
    })();
    return this.#disposed;
  }
}

export function commonPrefixLength(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * Turns tokens into text one at a time. A token may end inside a multi-byte character; its text
 * then ends in U+FFFD and is held until the character completes (at most 4 tokens). The previous
 * tokens are passed as context so that leading-space rules of the tokenizer apply.
 */
class TokenTextDecoder {
  readonly #model: LlamaModel;
  #pending: Token[] = [];
  #last: Token[] = [];

  constructor(model: LlamaModel) {
    this.#model = model;
  }

  push(token: Token): string {
    this.#pending.push(token);
    const text = this.#model.detokenize(this.#pending, false, this.#last);
    if (text.endsWith('\uFFFD') && this.#pending.length < 4) return '';
    this.#last = [...this.#last, ...this.#pending].slice(-8);
    this.#pending = [];
    return text;
  }

  flush(): string {
    if (this.#pending.length === 0) return '';
    const text = this.#model.detokenize(this.#pending, false, this.#last);
    this.#pending = [];
    return text;
  }
}

/** The model's vocabulary size from its GGUF metadata (0 when the file does not say). */
/**
 * The most tokens one prompt step at position `pos` may take so that its attention scores
 * (n_kv × tokens × heads × 4 bytes, flash attention off, graph on the CPU) stay under
 * ATTENTION_SCRATCH_CAP, the figure the planner predicts. n_kv is the cells in use after the
 * step, padded to 256 as llama.cpp does; with several slots one batch may span every slot's
 * cells, so it is all of them. `heads` 0 (flash attention on, or a GPU graph): no limit but the
 * chunk's own.
 */
export function attentionChunkLimit(
  pos: number,
  cells: number,
  parallel: number,
  heads: number,
): number {
  if (heads <= 0) return PROMPT_CHUNK_TOKENS;
  const nKv =
    parallel === 1 ? Math.min(cells, Math.ceil((pos + PROMPT_CHUNK_TOKENS) / 256) * 256) : cells;
  const n = Math.floor(ATTENTION_SCRATCH_CAP / (parallel * nKv * heads * 4));
  return Math.max(1, Math.min(PROMPT_CHUNK_TOKENS, n));
}

/** The model's attention heads (the largest per-layer count where it varies); 0 when unknown. */
function headCount(model: LlamaModel): number {
  const info = model.fileInfo as {
    architectureMetadata?: { attention?: { head_count?: unknown } };
  };
  const h = info.architectureMetadata?.attention?.head_count;
  const n = Array.isArray(h) ? Math.max(0, ...h.filter((x) => typeof x === 'number')) : h;
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : 0;
}

function vocabularySize(model: LlamaModel): number {
  const info = model.fileInfo as {
    architectureMetadata?: { vocab_size?: unknown };
    metadata?: { tokenizer?: { ggml?: { tokens?: { length?: unknown } } } };
  };
  const n = info.architectureMetadata?.vocab_size ?? info.metadata?.tokenizer?.ggml?.tokens?.length;
  return typeof n === 'number' && Number.isFinite(n) ? n : 0;
}
