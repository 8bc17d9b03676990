/**
 * The daemon's measurements: per-request records (the last N, for GET /admin/requests) and the
 * Prometheus registry behind GET /metrics.
 *
 * What feeds it:
 * - the HTTP routes open a span per request (`begin`) and close it once (span.end);
 * - the composition root forwards the model manager's events (`observeManagerEvent`) and, if it
 *   wants, pressure changes (`setPressureLevel`); a `pressure` source read at scrape time serves
 *   as well;
 * - gauges of models, queues, ledger and stream buffers are read at scrape time from injected
 *   sources (collect callbacks), so nothing here polls or holds a timer.
 *
 * Label values are bounded: model names (the catalog), endpoints (the routes), outcomes, reasons
 * (a fixed list, anything else is `other`).
 */
import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  type CounterConfiguration,
} from 'prom-client';
import { RecentRequests, RequestSpan, type RequestRecord, type SpanInfo } from './requests.js';

export type PressureLevelName = 'low' | 'medium' | 'high' | 'critical';
export const PRESSURE_LEVELS: readonly PressureLevelName[] = ['low', 'medium', 'high', 'critical'];

/** The fields of a model's status the gauges read; each may be absent. */
export interface ModelRow {
  name: string;
  state: string;
  inFlight?: number;
  queued?: number;
  predicted?: number;
  measured?: number;
  peak?: number;
  allocated?: number;
  /** The engine of a loaded model's runner. */
  engine?: string;
}

export interface LedgerRow {
  budget: number;
  reserved: number;
  measured: number;
  free: number;
}

/** The manager events the counters read (a structural subset of ManagerEvent). */
export type ManagerEventLike =
  | { type: 'load-start'; model: string; degraded?: boolean }
  | { type: 'load-done'; model: string; loadMs: number }
  | { type: 'load-failed'; model: string; error?: string }
  | { type: 'runner-exit'; model: string; expected: boolean }
  | { type: 'unload'; model: string; reason: string }
  | { type: string; model: string };

export interface ServingMetricsOptions {
  /** Records kept for /admin/requests. Defaults to 100. */
  recent?: number;
  /** Models as the manager lists them, read at scrape time. */
  models?: () => readonly ModelRow[];
  /** The ledger, read at scrape time. */
  ledger?: () => LedgerRow | undefined;
  /** The pressure level, read at scrape time; overrides `setPressureLevel` when it answers. */
  pressure?: () => PressureLevelName | undefined;
  /** Node.js process metrics (RSS, heap, event loop lag). Defaults to true. */
  processMetrics?: boolean;
  now?: () => number;
  wallNow?: () => number;
}

/** Unload reasons as the manager words them → label values. */
const REASONS: Record<string, string> = {
  'idle TTL expired': 'ttl',
  'evicted for room': 'evicted',
  'evicted: maxLoadedModels': 'max_models',
  'evicted: measured over budget': 'over_budget',
  unload: 'unload',
  'forced unload': 'forced',
  'drain deadline passed': 'drain_deadline',
  'reload with a larger config': 'reload',
  shutdown: 'shutdown',
  'load cancelled': 'load_cancelled',
  'recycled: grew past its plan': 'recycle',
};

/** A stable label value for an unload reason. */
export function reasonLabel(reason: string): string {
  const known = REASONS[reason];
  if (known) return known;
  if (/pressure/i.test(reason)) return 'pressure';
  return 'other';
}

/** Something whose buffered output can be read (a ServerResponse). */
export interface BufferedWritable {
  readonly writableLength: number;
}

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const RATES = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];
const TOKENS = [16, 64, 256, 1024, 4096, 16384, 65536];

export class ServingMetrics {
  readonly registry = new Registry();
  readonly #recent: RecentRequests;
  readonly #now: () => number;
  readonly #wallNow: () => number;
  readonly #streams = new Set<BufferedWritable>();
  #nextId = 1;
  #pressure: PressureLevelName | undefined;

  readonly #requests: Counter<'model' | 'endpoint' | 'outcome'>;
  readonly #duration: Histogram<'model' | 'endpoint' | 'outcome'>;
  readonly #queued: Histogram<'model'>;
  readonly #loadWait: Histogram<'model'>;
  readonly #ttft: Histogram<'model'>;
  readonly #promptRate: Histogram<'model'>;
  readonly #genRate: Histogram<'model'>;
  readonly #promptTokens: Histogram<'model'>;
  readonly #tokens: Counter<'model' | 'kind'>;
  readonly #cancelled: Counter<'model' | 'stage'>;
  readonly #loads: Counter<'model' | 'result'>;
  readonly #loadSeconds: Histogram<'model'>;
  readonly #unloads: Counter<'model' | 'reason'>;
  readonly #crashes: Counter<'model'>;

  constructor(opts: ServingMetricsOptions = {}) {
    this.#recent = new RecentRequests(opts.recent ?? 100);
    this.#now = opts.now ?? performance.now.bind(performance);
    this.#wallNow = opts.wallNow ?? Date.now;
    const registers = [this.registry];
    const counter = <L extends string>(c: CounterConfiguration<L>): Counter<L> =>
      new Counter<L>({ ...c, registers });

    this.#requests = counter({
      name: 'headroom_requests_total',
      help: 'Requests by model, endpoint and outcome (done, cancelled, error).',
      labelNames: ['model', 'endpoint', 'outcome'],
    });
    this.#duration = new Histogram({
      name: 'headroom_request_duration_seconds',
      help: 'Arrival to end of a request, queueing and loading included.',
      labelNames: ['model', 'endpoint', 'outcome'],
      buckets: SECONDS,
      registers,
    });
    this.#queued = new Histogram({
      name: 'headroom_request_queue_seconds',
      help: "Time a request waited in its model's queue (loads excluded).",
      labelNames: ['model'],
      buckets: SECONDS,
      registers,
    });
    this.#loadWait = new Histogram({
      name: 'headroom_request_load_wait_seconds',
      help: 'Load time seen by requests that waited for a load.',
      labelNames: ['model'],
      buckets: SECONDS,
      registers,
    });
    this.#ttft = new Histogram({
      name: 'headroom_request_ttft_seconds',
      help: 'Arrival to the first token of a streamed answer.',
      labelNames: ['model'],
      buckets: SECONDS,
      registers,
    });
    this.#promptRate = new Histogram({
      name: 'headroom_request_prompt_tokens_per_second',
      help: 'Prompt evaluation rate of streamed requests (cached tokens excluded).',
      labelNames: ['model'],
      buckets: RATES,
      registers,
    });
    this.#genRate = new Histogram({
      name: 'headroom_request_generation_tokens_per_second',
      help: 'Generation rate of streamed requests after the first token.',
      labelNames: ['model'],
      buckets: RATES,
      registers,
    });
    this.#promptTokens = new Histogram({
      name: 'headroom_request_prompt_tokens',
      help: 'Prompt length in tokens.',
      labelNames: ['model'],
      buckets: TOKENS,
      registers,
    });
    this.#tokens = counter({
      name: 'headroom_tokens_total',
      help: 'Tokens by kind: prompt, cached (prompt tokens reused), completion.',
      labelNames: ['model', 'kind'],
    });
    this.#cancelled = counter({
      name: 'headroom_requests_cancelled_total',
      help: 'Requests whose client left, by the stage they were in.',
      labelNames: ['model', 'stage'],
    });
    this.#loads = counter({
      name: 'headroom_model_loads_total',
      help: 'Model loads by result (started, done, failed, degraded: planned smaller to fit).',
      labelNames: ['model', 'result'],
    });
    this.#loadSeconds = new Histogram({
      name: 'headroom_model_load_seconds',
      help: 'Time to load a model (runner start to ready).',
      labelNames: ['model'],
      buckets: SECONDS,
      registers,
    });
    this.#unloads = counter({
      name: 'headroom_model_unloads_total',
      help: 'Models unloaded, by reason (ttl, evicted, max_models, over_budget, pressure, unload, forced, drain_deadline, reload, shutdown, load_cancelled, other).',
      labelNames: ['model', 'reason'],
    });
    this.#crashes = counter({
      name: 'headroom_runner_crashes_total',
      help: 'Runners that exited without being asked to.',
      labelNames: ['model'],
    });

    const models = opts.models;
    new Gauge({
      name: 'headroom_model_memory_bytes',
      help: 'Memory of a loaded model: predicted by the plan, measured (resident), peak (watermark), allocated (held in the ledger).',
      labelNames: ['model', 'kind'],
      registers,
      collect() {
        this.reset();
        for (const m of models?.() ?? []) {
          for (const kind of ['predicted', 'measured', 'peak', 'allocated'] as const) {
            const v = m[kind];
            if (typeof v === 'number' && Number.isFinite(v)) this.set({ model: m.name, kind }, v);
          }
        }
      },
    });
    new Gauge({
      name: 'headroom_model_info',
      help: 'The engine a loaded model runs on (1 for each loaded model).',
      labelNames: ['model', 'engine'],
      registers,
      collect() {
        this.reset();
        for (const m of models?.() ?? [])
          if (m.engine !== undefined) this.set({ model: m.name, engine: m.engine }, 1);
      },
    });
    new Gauge({
      name: 'headroom_model_queue_length',
      help: "Requests waiting in a model's queue.",
      labelNames: ['model'],
      registers,
      collect() {
        this.reset();
        for (const m of models?.() ?? [])
          if (typeof m.queued === 'number') this.set({ model: m.name }, m.queued);
      },
    });
    new Gauge({
      name: 'headroom_model_in_flight',
      help: 'Requests a model is serving now.',
      labelNames: ['model'],
      registers,
      collect() {
        this.reset();
        for (const m of models?.() ?? [])
          if (typeof m.inFlight === 'number') this.set({ model: m.name }, m.inFlight);
      },
    });
    new Gauge({
      name: 'headroom_model_state',
      help: 'State of each model (1 for its current state).',
      labelNames: ['model', 'state'],
      registers,
      collect() {
        this.reset();
        for (const m of models?.() ?? []) this.set({ model: m.name, state: m.state }, 1);
      },
    });
    const ledger = opts.ledger;
    new Gauge({
      name: 'headroom_ledger_bytes',
      help: 'The memory ledger: budget, reserved (loads in progress), measured (running), free.',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        const l = ledger?.();
        if (!l) return;
        for (const kind of ['budget', 'reserved', 'measured', 'free'] as const) {
          const v = l[kind];
          if (typeof v === 'number' && Number.isFinite(v)) this.set({ kind }, v);
        }
      },
    });
    const pressureOf = (): PressureLevelName | undefined => opts.pressure?.() ?? this.#pressure;
    new Gauge({
      name: 'headroom_pressure_level',
      help: 'Memory pressure level: 0 low, 1 medium, 2 high, 3 critical (absent when unknown).',
      registers,
      collect() {
        this.reset();
        const p = pressureOf();
        if (p !== undefined) this.set(PRESSURE_LEVELS.indexOf(p));
      },
    });
    new Gauge({
      name: 'headroom_pressure',
      help: 'Memory pressure level as a state set (1 for the current level).',
      labelNames: ['level'],
      registers,
      collect() {
        this.reset();
        const p = pressureOf();
        if (p !== undefined)
          for (const l of PRESSURE_LEVELS) this.set({ level: l }, l === p ? 1 : 0);
      },
    });
    const streams = this.#streams;
    new Gauge({
      name: 'headroom_streams_active',
      help: 'Answers being forwarded from runners to clients now.',
      registers,
      collect() {
        this.set(streams.size);
      },
    });
    new Gauge({
      name: 'headroom_stream_buffered_bytes',
      help: 'Bytes of answers buffered in the daemon, waiting for slow clients (bounded by backpressure).',
      registers,
      collect() {
        let n = 0;
        for (const s of streams) n += s.writableLength;
        this.set(n);
      },
    });
    if (opts.processMetrics !== false) {
      collectDefaultMetrics({ register: this.registry });
      // Gauges named like counters: `promtool check metrics` rejects them, and they say little.
      for (const name of [
        'nodejs_active_handles_total',
        'nodejs_active_requests_total',
        'nodejs_active_resources_total',
      ])
        this.registry.removeSingleMetric(name);
    }
  }

  /** Opens the span of a request that just arrived. */
  begin(info: SpanInfo): RequestSpan {
    return new RequestSpan(this.#nextId++, info, this.#now, this.#wallNow(), (r) =>
      this.#record(r),
    );
  }

  /** The last records, newest first. */
  recent(limit?: number): RequestRecord[] {
    return this.#recent.list(limit);
  }

  get recentCapacity(): number {
    return this.#recent.capacity;
  }

  /** Counts loads, load failures, unloads by reason and crashes. Wire it to the manager's events. */
  observeManagerEvent(e: ManagerEventLike): void {
    switch (e.type) {
      case 'load-start':
        this.#loads.inc({ model: e.model, result: 'started' });
        if ('degraded' in e && e.degraded === true)
          this.#loads.inc({ model: e.model, result: 'degraded' });
        break;
      case 'load-done':
        this.#loads.inc({ model: e.model, result: 'done' });
        if ('loadMs' in e && typeof e.loadMs === 'number')
          this.#loadSeconds.observe({ model: e.model }, e.loadMs / 1000);
        break;
      case 'load-failed':
        this.#loads.inc({ model: e.model, result: 'failed' });
        break;
      case 'runner-exit':
        if ('expected' in e && e.expected === false) this.#crashes.inc({ model: e.model });
        break;
      case 'unload':
        if ('reason' in e && typeof e.reason === 'string')
          this.#unloads.inc({ model: e.model, reason: reasonLabel(e.reason) });
        break;
    }
  }

  /** Sets the pressure level shown when no `pressure` source answers. */
  setPressureLevel(level: PressureLevelName | undefined): void {
    this.#pressure = level;
  }

  /** Counts a response as an active stream until the returned function is called. */
  trackStream(res: BufferedWritable): () => void {
    this.#streams.add(res);
    return () => this.#streams.delete(res);
  }

  /** The Prometheus text exposition. */
  exposition(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  #record(r: RequestRecord): void {
    this.#recent.add(r);
    const model = r.model;
    this.#requests.inc({ model, endpoint: r.endpoint, outcome: r.outcome });
    this.#duration.observe(
      { model, endpoint: r.endpoint, outcome: r.outcome },
      r.durationMs / 1000,
    );
    if (r.outcome === 'cancelled') this.#cancelled.inc({ model, stage: r.stage });
    if (r.queuedMs !== undefined) this.#queued.observe({ model }, r.queuedMs / 1000);
    if (r.loadMs !== undefined) this.#loadWait.observe({ model }, r.loadMs / 1000);
    if (r.ttftMs !== undefined && r.outcome === 'done')
      this.#ttft.observe({ model }, r.ttftMs / 1000);
    if (r.promptTokensPerS !== undefined) this.#promptRate.observe({ model }, r.promptTokensPerS);
    if (r.generationTokensPerS !== undefined && r.outcome === 'done')
      this.#genRate.observe({ model }, r.generationTokensPerS);
    if (r.promptTokens !== undefined) {
      this.#promptTokens.observe({ model }, r.promptTokens);
      this.#tokens.inc({ model, kind: 'prompt' }, r.promptTokens);
    }
    if (r.cachedTokens !== undefined) this.#tokens.inc({ model, kind: 'cached' }, r.cachedTokens);
    if (r.completionTokens !== undefined)
      this.#tokens.inc({ model, kind: 'completion' }, r.completionTokens);
  }
}
