/**
 * Per-request measurements: a span opened when a request arrives and closed exactly once when it
 * ends, turned into a RequestRecord (what /admin/requests shows) and fed to the Prometheus side.
 * Pure bookkeeping: the clock is injected, nothing here does I/O or holds timers.
 */
import type { Usage } from './stream-observer.js';

export type RequestOutcome = 'done' | 'cancelled' | 'error';

/** Where a request was when it ended. */
export type RequestStage = 'queued' | 'loading' | 'prompt' | 'decoding' | 'finished';

export interface RequestRecord {
  id: number;
  model: string;
  /** e.g. /v1/chat/completions */
  endpoint: string;
  stream: boolean;
  /** Arrival, ms since the epoch. */
  startedAt: number;
  outcome: RequestOutcome;
  stage: RequestStage;
  /** HTTP status sent (0 when the client left before any). */
  status: number;
  /** Error code when the outcome is `error`. */
  error?: string;
  /** Time waiting for a slot in the model's queue (excluding the load). */
  queuedMs?: number;
  /** Load time when this request waited for a load. */
  loadMs?: number;
  /** Arrival to the first streamed bytes (the first token); streams only. */
  ttftMs?: number;
  durationMs: number;
  promptTokens?: number;
  cachedTokens?: number;
  completionTokens?: number;
  /** Prompt tokens evaluated (not cached) per second of prompt evaluation. */
  promptTokensPerS?: number;
  /** Tokens per second after the first. */
  generationTokensPerS?: number;
  /** Messages dropped by the `truncate_middle` context policy. */
  droppedMessages?: number;
}

export interface SpanInfo {
  model: string;
  endpoint: string;
  stream: boolean;
}

/** The figures a span collects on the way; `end()` turns them into a record. */
export interface SpanEnd {
  outcome: RequestOutcome;
  status: number;
  error?: string;
  /** Where the request was when it ended; inferred from what was marked when absent. */
  stage?: RequestStage;
  usage?: Usage;
  /** Generated events counted on the wire (a lower bound of tokens when usage is missing). */
  events?: number;
}

export class RequestSpan {
  readonly id: number;
  readonly info: SpanInfo;
  readonly startedAt: number;
  readonly #t0: number;
  readonly #now: () => number;
  readonly #sink: (r: RequestRecord) => void;
  #leasedAt: number | undefined;
  #firstAt: number | undefined;
  #waitedMs: number | undefined;
  #loadMs: number | undefined;
  #dropped: number | undefined;
  #ended = false;

  constructor(
    id: number,
    info: SpanInfo,
    now: () => number,
    wallNow: number,
    sink: (r: RequestRecord) => void,
  ) {
    this.id = id;
    this.info = info;
    this.#now = now;
    this.#t0 = now();
    this.startedAt = wallNow;
    this.#sink = sink;
  }

  /** The lease was granted after `waitedMs` (queue + load), `loadMs` of which was a load. */
  leased(timing: { waitedMs: number; loadMs?: number }): void {
    this.#leasedAt = this.#now();
    this.#waitedMs = timing.waitedMs;
    this.#loadMs = timing.loadMs;
  }

  /** The first bytes of the answer reached the daemon at `at` (same clock). */
  firstByte(at: number): void {
    this.#firstAt ??= at;
  }

  dropped(messages: number): void {
    this.#dropped = messages;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Closes the span; only the first call counts. */
  end(e: SpanEnd): RequestRecord | undefined {
    if (this.#ended) return undefined;
    this.#ended = true;
    const end = this.#now();
    const r: RequestRecord = {
      id: this.id,
      model: this.info.model,
      endpoint: this.info.endpoint,
      stream: this.info.stream,
      startedAt: this.startedAt,
      outcome: e.outcome,
      stage:
        e.stage ??
        (e.outcome === 'done'
          ? 'finished'
          : this.#firstAt !== undefined
            ? 'decoding'
            : this.#leasedAt !== undefined
              ? 'prompt'
              : 'queued'),
      status: e.status,
      durationMs: round(end - this.#t0),
    };
    if (e.error !== undefined) r.error = e.error;
    if (this.#waitedMs !== undefined)
      r.queuedMs = round(Math.max(0, this.#waitedMs - (this.#loadMs ?? 0)));
    if (this.#loadMs !== undefined) r.loadMs = round(this.#loadMs);
    if (this.#dropped !== undefined) r.droppedMessages = this.#dropped;
    const ttft =
      this.info.stream && this.#firstAt !== undefined ? this.#firstAt - this.#t0 : undefined;
    if (ttft !== undefined) r.ttftMs = round(ttft);
    const u = e.usage;
    if (u) {
      r.promptTokens = u.promptTokens;
      r.completionTokens = u.completionTokens;
      if (u.cachedTokens !== undefined) r.cachedTokens = u.cachedTokens;
    } else if (e.events !== undefined && this.info.stream && e.events > 0) {
      // Without usage (a cancelled stream): one event per emitted piece, after the role event.
      r.completionTokens = Math.max(0, e.events - (this.info.endpoint.includes('chat') ? 1 : 0));
    }
    const rates = ratesOf({
      ...(ttft !== undefined && this.#leasedAt !== undefined
        ? { promptMs: this.#firstAt! - this.#leasedAt, decodeMs: end - this.#firstAt! }
        : {}),
      ...(u ? { promptTokens: u.promptTokens - (u.cachedTokens ?? 0) } : {}),
      ...(r.completionTokens !== undefined ? { completionTokens: r.completionTokens } : {}),
    });
    if (rates.prompt !== undefined) r.promptTokensPerS = rates.prompt;
    if (rates.generation !== undefined) r.generationTokensPerS = rates.generation;
    this.#sink(r);
    return r;
  }
}

/**
 * Prompt and generation rates. Prompt evaluation time is lease → first token (it includes the
 * first decode step and the loopback hop: a slight underestimate of the rate); generation is
 * first token → end over the tokens after the first.
 */
export function ratesOf(x: {
  promptMs?: number;
  decodeMs?: number;
  promptTokens?: number;
  completionTokens?: number;
}): { prompt?: number; generation?: number } {
  const out: { prompt?: number; generation?: number } = {};
  if (
    x.promptMs !== undefined &&
    x.promptTokens !== undefined &&
    x.promptMs > 0 &&
    x.promptTokens > 0
  )
    out.prompt = round((x.promptTokens * 1000) / x.promptMs);
  if (
    x.decodeMs !== undefined &&
    x.completionTokens !== undefined &&
    x.decodeMs > 0 &&
    x.completionTokens > 1
  )
    out.generation = round(((x.completionTokens - 1) * 1000) / x.decodeMs);
  return out;
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

/** The last `capacity` records, oldest overwritten first. */
export class RecentRequests {
  readonly capacity: number;
  readonly #items: RequestRecord[] = [];
  #next = 0;

  constructor(capacity: number) {
    this.capacity = Math.max(1, Math.floor(capacity));
  }

  add(r: RequestRecord): void {
    if (this.#items.length < this.capacity) this.#items.push(r);
    else this.#items[this.#next] = r;
    this.#next = (this.#next + 1) % this.capacity;
  }

  /** Newest first; at most `limit`. */
  list(limit = this.capacity): RequestRecord[] {
    const n = this.#items.length;
    const out: RequestRecord[] = [];
    for (let k = 1; k <= Math.min(limit, n); k++) {
      out.push(this.#items[(this.#next - k + n * 2) % n]!);
    }
    return out;
  }
}
