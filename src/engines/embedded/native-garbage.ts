/**
 * Native memory that only a garbage collection returns.
 *
 * node-llama-cpp (3.22) creates a sampler for every evaluation call — each prompt chunk included
 * — and the native sampler allocates (and zero-fills) a candidates array of n_vocab × 12 bytes in
 * its constructor. `dispose()` frees the sampler chain but not that array: it goes only when V8
 * collects the JavaScript wrapper, and V8 does not know the array exists. A runner reading a long
 * prompt in 64-token chunks therefore piles up garbage: measured on a 128k-vocabulary model,
 * +272 MiB of anonymous memory for a 2.9k-token prompt in 16-token chunks, +71 MiB in 64-token
 * chunks, against −23 MiB with a minor collection after each chunk (docs/benchmarks/planner.md).
 * The planner cannot predict garbage, so the runner collects it: after each evaluation call it
 * counts the bytes left behind and runs a young-generation collection (a scavenge: ~0.1–1 ms with
 * a young generation this small) once they pass `thresholdBytes`. The wrappers die young — they
 * are unreachable as soon as the call returns — so a scavenge finds them before they are promoted.
 *
 * Not when calls overlap. node-llama-cpp runs one native batch at a time on a worker thread;
 * when evaluation calls of several sequences are in flight together, V8 collects many of their
 * wrappers without ever calling the native finalizer, and the arrays stay allocated until the
 * process exits. Measured with node-llama-cpp alone (128k vocabulary, 16-token chunks, gdb on the
 * addon): two sequences filled at once, 120 samplers made and collected, 60 finalized, +89 MiB
 * that no later collection returns (four sequences: 3 of 4 lost); one sequence with a 1 ms timer
 * collecting meanwhile, all 120 lost; the same calls taking turns, none lost. Collecting at each
 * batch start (no batch in flight) did not help (a 4-slot runner grew by 860 MiB over 20 requests).
 * So the engine lets prompt chunks of different slots take turns (Engine.#promptTurn): measured on
 * a 4-slot runner, 64k vocabulary, 20 requests four at a time, +12.6 MiB instead of +862 MiB. What
 * remains is one sampler per generation (generations still overlap, that is what slots are for):
 * up to n_vocab × 12 bytes per concurrent request, not returned. After overlapping calls the
 * collection is a full one (samplers that lived through several batches may have been promoted).
 *
 * Needs `--expose-gc` (embeddedSpawnSpec passes it); without it, counting is all it does.
 */
export class NativeGarbage {
  readonly #perCall: number;
  readonly #threshold: number;
  readonly #gc: ((opts: { type: 'minor' | 'major' }) => void) | undefined;
  #pending = 0;
  #collections = 0;
  #majors = 0;
  #inFlight = 0;
  #overlapped = false;

  /**
   * @param vocabSize the model's vocabulary: each evaluation call leaves vocabSize × 12 bytes.
   * @param thresholdBytes garbage tolerated before a collection (default 4 MiB).
   */
  constructor(vocabSize: number, thresholdBytes = 4 * 1024 * 1024, gc = globalGc()) {
    this.#perCall = Math.max(0, vocabSize) * CANDIDATE_BYTES;
    this.#threshold = thresholdBytes;
    this.#gc = gc;
  }

  /** Call before every node-llama-cpp evaluation call. */
  started(): void {
    this.#inFlight++;
    if (this.#inFlight > 1) this.#overlapped = true;
  }

  /** Call after every node-llama-cpp evaluation call (each one makes a sampler), failed ones too. */
  evaluated(): void {
    this.#inFlight = Math.max(0, this.#inFlight - 1);
    this.#pending += this.#perCall;
    if (this.#pending >= this.#threshold) this.collect();
  }

  /** Collects now if anything is pending (e.g. when a request ends). */
  collect(): void {
    if (this.#pending === 0 || !this.#gc) return;
    const major = this.#overlapped;
    this.#gc({ type: major ? 'major' : 'minor' });
    this.#pending = 0;
    this.#collections++;
    if (major) this.#majors++;
    this.#overlapped = this.#inFlight > 1;
  }

  /** Collections run so far, young-generation and full (for /stats). */
  get collections(): number {
    return this.#collections;
  }

  /** Of `collections`, the full ones (after overlapping calls). */
  get majorCollections(): number {
    return this.#majors;
  }

  /** Whether collections can run (the runner was started with --expose-gc). */
  get enabled(): boolean {
    return this.#gc !== undefined;
  }
}

/** sizeof(llama_token_data): token id (int32), logit (float), p (float). */
const CANDIDATE_BYTES = 12;

function globalGc(): ((opts: { type: 'minor' | 'major' }) => void) | undefined {
  const gc = (globalThis as { gc?: unknown }).gc;
  return typeof gc === 'function' ? (gc as (opts: { type: 'minor' | 'major' }) => void) : undefined;
}
