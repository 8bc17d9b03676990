/**
 * The live sampler: one reading of the machine every interval (reading.ts), the pressure level
 * with its hysteresis (pressure.ts), trends and alerts (alert-rules.ts), and a bounded history.
 * The daemon creates one and serves it through its feed (daemon/monitor-feed.ts), which adds the
 * scheduler's events to the stream the HTTP layer reads.
 *
 * Concurrency: samples never overlap (the next timer is armed after a sample ends); sampleNow()
 * called while one is running joins it. Listeners run synchronously inside the sample: they
 * must not block (reactions start their unloads and return).
 */
import { EventEmitter } from 'node:events';
import { describeError } from '../lib/errors.js';
import { AlertRules } from './alert-rules.js';
import type { LevelChange, MonitorSample, WatchedProcess } from './feed.js';
import {
  defaultThresholds,
  excessBytes,
  INITIAL_LEVEL,
  stepLevel,
  type LevelState,
  type PressureInputs,
  type PressureLevel,
  type PressureThresholds,
} from './pressure.js';
import { MachineReader, readOomScoreAdj, type MachineFacts } from './reading.js';
import { RingBuffer } from './ring.js';
import type { GpuMemory } from './sysfs.js';
import type { Alert } from './trends.js';

export interface SamplerOptions {
  /** Defaults to 1000 ms. */
  intervalMs?: number;
  /** Samples kept. Defaults to 600. */
  historySize?: number;
  /** The runners to watch, asked at every sample. Defaults to none. */
  processes?: () => readonly WatchedProcess[];
  /** Defaults to thresholds for a machine of this size with a reserve of a sixth of RAM. */
  thresholds?: PressureThresholds;
  /** °C at which a zone without a trip point counts as throttling. Defaults to 90. */
  throttleCelsius?: number;
  trends?: { windowSeconds: number; leakMiBPerMinute: number };
  /** GPU memory not visible in sysfs (NVIDIA): probed every `gpuProbeEveryMs` (default 10 s), off the sample path. */
  gpuProbe?: () => Promise<GpuMemory[]>;
  gpuProbeEveryMs?: number;
  /**
   * The daemon's oom_score_adj once it made sure it is ≤ 0 where it could
   * (daemon/oom-score.ts): an alert when above 0, and each runner's must be above it. Undefined:
   * not checked.
   */
  daemonOomScoreAdj?: number;
  /** Prefix for /proc and /sys (tests). Defaults to '/'. */
  root?: string;
  /** Defaults to process.platform. */
  platform?: NodeJS.Platform;
  /** Start the timer. Defaults to true; false leaves sampling to sampleNow(). */
  start?: boolean;
}

export interface SamplerFacts extends MachineFacts {
  /** The daemon's oom_score_adj, as the daemon gave it (undefined: not checked). */
  oomScoreAdj?: number;
}

export interface SamplerStats {
  samples: number;
  failures: number;
  lastError?: string;
  /** CPU time (user + system) spent taking samples, microseconds. */
  cpuMicros: number;
  lastCpuMicros: number;
}

type SamplerEvents = {
  sample: [MonitorSample];
  'level-change': [LevelChange];
  alert: [Alert];
};

export class Sampler extends EventEmitter<SamplerEvents> {
  readonly intervalMs: number;
  readonly facts: SamplerFacts;
  readonly thresholds: PressureThresholds;
  readonly #opts: SamplerOptions;
  readonly #reader: MachineReader;
  readonly #rules: AlertRules;
  readonly #history: RingBuffer<MonitorSample>;
  #level: LevelState = INITIAL_LEVEL;
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<MonitorSample> | undefined;
  #disposed = false;
  readonly #stats: SamplerStats = { samples: 0, failures: 0, cpuMicros: 0, lastCpuMicros: 0 };

  private constructor(opts: SamplerOptions, reader: MachineReader) {
    super();
    this.#opts = opts;
    this.#reader = reader;
    this.intervalMs = opts.intervalMs ?? 1000;
    this.facts = {
      ...reader.facts,
      ...(opts.daemonOomScoreAdj === undefined ? {} : { oomScoreAdj: opts.daemonOomScoreAdj }),
    };
    this.#history = new RingBuffer(opts.historySize ?? 600);
    this.thresholds =
      opts.thresholds ??
      defaultThresholds({
        nominalBytes: reader.facts.totalRam,
        reserveBytes: reader.facts.totalRam / 6,
        lowMemory: false,
        level: 'basic',
      });
    const root = opts.root ?? '/';
    this.#rules = new AlertRules({
      intervalMs: this.intervalMs,
      ...(opts.trends ? { trends: opts.trends } : {}),
      ...(opts.daemonOomScoreAdj === undefined
        ? {}
        : { daemonOomScoreAdj: opts.daemonOomScoreAdj }),
      oomScoreOf: (pid) => readOomScoreAdj(pid, root),
    });
    // Many feed subscribers may listen; each adds one listener.
    this.setMaxListeners(0);
  }

  /**
   * Locates the static facts, takes a first sample (so history and level are there at once)
   * and starts the timer (unref'd: it never keeps the process alive).
   */
  static async create(opts: SamplerOptions = {}): Promise<Sampler> {
    const intervalMs = opts.intervalMs ?? 1000;
    if (!Number.isFinite(intervalMs) || intervalMs < 10)
      throw new RangeError(`sampler interval must be at least 10 ms, got ${intervalMs}`);
    const reader = await MachineReader.locate({
      ...(opts.throttleCelsius === undefined ? {} : { throttleCelsius: opts.throttleCelsius }),
      ...(opts.gpuProbe ? { gpuProbe: opts.gpuProbe } : {}),
      ...(opts.gpuProbeEveryMs === undefined ? {} : { gpuProbeEveryMs: opts.gpuProbeEveryMs }),
      ...(opts.root === undefined ? {} : { root: opts.root }),
      ...(opts.platform === undefined ? {} : { platform: opts.platform }),
      toolTimeoutMs: intervalMs,
    });
    const s = new Sampler(opts, reader);
    await s.sampleNow();
    if (opts.start !== false) s.#arm();
    return s;
  }

  // ------------------------------------------------------------------------------ reads

  /** Oldest first; with `limit`, the newest `limit`. */
  history(limit?: number): MonitorSample[] {
    return this.#history.toArray(limit);
  }

  latest(): MonitorSample | undefined {
    return this.#history.last();
  }

  level(): PressureLevel {
    return this.#level.level;
  }

  alerts(): { active: Alert[]; recent: Array<Alert & { resolvedAt?: number }> } {
    return this.#rules.alerts();
  }

  stats(): SamplerStats {
    return { ...this.#stats };
  }

  // ------------------------------------------------------------------------------ sampling

  /** Takes a sample now (joining one in progress), updates level, trends and alerts, emits. */
  sampleNow(): Promise<MonitorSample> {
    this.#running ??= this.#sample().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  #arm(): void {
    if (this.#disposed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.sampleNow().then(
        () => this.#arm(),
        (err: unknown) => {
          this.#stats.failures++;
          this.#stats.lastError = describeError(err);
          this.#arm();
        },
      );
    }, this.intervalMs);
    this.#timer.unref();
  }

  async #sample(): Promise<MonitorSample> {
    const cpu0 = process.cpuUsage();
    const watched = this.#opts.processes?.() ?? [];
    const { room, ...reading } = await this.#reader.read(++this.#seq, Date.now(), watched);
    const sample: MonitorSample = {
      ...reading,
      pressure: { level: this.#level.level, reasons: [], ...room, excessBytes: 0 },
    };
    this.#analyse(sample, watched);
    const used = process.cpuUsage(cpu0);
    this.#stats.samples++;
    this.#stats.lastCpuMicros = used.user + used.system;
    this.#stats.cpuMicros += this.#stats.lastCpuMicros;
    return sample;
  }

  #analyse(sample: MonitorSample, watched: readonly WatchedProcess[]): void {
    const inputs: PressureInputs = {
      available: sample.pressure.available,
      capacity: sample.pressure.capacity,
      psiSome10: sample.psi?.some10,
      psiFull10: sample.psi?.full10,
      swapBytesPerSec: sample.memory.swapInPerSec + sample.memory.swapOutPerSec,
    };
    const from = this.#level.level;
    const step = stepLevel(this.#level, inputs, this.thresholds);
    this.#level = step.state;
    sample.pressure.level = step.state.level;
    sample.pressure.reasons = step.state.reasons;
    sample.pressure.excessBytes = excessBytes(inputs, this.thresholds);
    this.#history.push(sample);

    const alerts = this.#rules.evaluate(sample, watched);
    this.emit('sample', sample);
    if (step.changed)
      this.emit('level-change', {
        at: sample.at,
        from,
        to: step.state.level,
        reasons: step.state.reasons,
      });
    for (const a of alerts) this.emit('alert', a);
  }

  /** Stops the timer and waits for a sample in progress. Idempotent. */
  async dispose(): Promise<void> {
    this.#disposed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}
