/**
 * The live sampler: one sample of the machine every interval, the pressure level with its
 * hysteresis, trends and alerts, and a bounded history. The daemon creates one; the HTTP layer
 * reads it through the MonitorFeed interface.
 *
 * Cost contract (Linux): static facts (where the cgroup is, which sensors exist, total RAM) are
 * located once in create(); a sample reads ~10 small kernel files plus one status file per
 * watched process, synchronously into a reused buffer (io.ts), and spawns no process. GPU memory
 * from an injected probe (nvidia-smi, node-llama-cpp) runs at its own slower cadence, off the
 * sample path. On macOS a sample runs vm_stat and sysctl (there is no /proc).
 *
 * Concurrency: samples never overlap (the next timer is armed after a sample ends); sampleNow()
 * called while one is running joins it. Listeners run synchronously inside the sample: they
 * must not block (reactions start their unloads and return).
 */
import { EventEmitter } from 'node:events';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { describeError } from '../lib/errors.js';
import { locateMemoryCgroup, type CgroupLocation } from './cgroup.js';
import { readDarwinMemory } from './darwin.js';
import { readOptionalSync, underRoot } from './io.js';
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
import { RingBuffer } from './ring.js';
import { readLinuxSample, swapRates, type LinuxMemorySample } from './sample.js';
import {
  locateSysfsGpus,
  locateThermal,
  readSysfsGpus,
  readThermal,
  type GpuMemory,
  type SysfsGpu,
  type ThermalReading,
  type ThermalSensors,
} from './sysfs.js';
import { AlertBook, TrendTracker, type Alert, type ComponentReading } from './trends.js';

/** A process the daemon asks the sampler to watch (its runners). */
export interface WatchedProcess {
  pid: number;
  /** The model it serves. */
  name: string;
  /** No request in flight. */
  idle: boolean;
}

export interface SampledProcess {
  role: 'daemon' | 'runner';
  name: string;
  pid: number;
  rss: number;
  rssAnon: number;
  rssFile: number;
  /** VmHWM: peak resident set since the process started. */
  peak: number;
  swap: number;
}

export interface MonitorSample {
  seq: number;
  /** Milliseconds since the epoch. */
  at: number;
  memory: {
    total: number;
    available: number;
    free: number;
    swapTotal: number;
    swapUsed: number;
    swapInPerSec: number;
    swapOutPerSec: number;
  };
  /** Memory PSI avg10 (%): the cgroup's own (v2) when it has one, else the system's. */
  psi?: { some10: number; full10?: number; source: 'cgroup' | 'system' };
  cgroup?: {
    version: 1 | 2;
    path: string;
    usage: number;
    workingSet: number;
    limit?: number;
    oomKills?: number;
  };
  processes: SampledProcess[];
  gpus: GpuMemory[];
  thermal: ThermalReading;
  pressure: {
    level: PressureLevel;
    reasons: string[];
    /** Bytes available for new work: min(MemAvailable, cgroup limit − working set). */
    available: number;
    /** min(total RAM, cgroup limit). */
    capacity: number;
    /** Bytes to free to get back under `medium` (with the hysteresis margin). */
    excessBytes: number;
  };
}

export interface LevelChange {
  at: number;
  from: PressureLevel;
  to: PressureLevel;
  reasons: string[];
}

/** One reaction to pressure, as the scheduler applied it (daemon/reactions.ts publishes these). */
export interface ReactionRecord {
  action: 'unload' | 'trim-prompt-caches' | 'cancel-request' | 'load-policy';
  model?: string;
  level: PressureLevel;
  reason: string;
  /** Memory the action returned (the runner's RSS before it stopped), bytes. */
  bytesFreed: number;
  /** From the decision to the action's end. */
  ms: number;
  outcome: 'done' | 'failed' | 'unsupported';
  error?: string;
}

/** What the live event stream carries. */
export type FeedEvent =
  | { type: 'sample'; sample: MonitorSample }
  | { type: 'level-change'; change: LevelChange }
  | { type: 'alert'; alert: Alert }
  /** Loads, unloads and evictions, as the scheduler reports them. */
  | { type: 'model'; at: number; event: { type: string; model: string } & Record<string, unknown> }
  | { type: 'reaction'; at: number; reaction: ReactionRecord };

/** The read side the HTTP layer uses (server/admin/monitor-routes.ts). */
export interface MonitorFeed {
  /** Oldest first; with `limit`, the newest `limit`. */
  history(limit?: number): MonitorSample[];
  latest(): MonitorSample | undefined;
  level(): PressureLevel;
  alerts(): { active: Alert[]; recent: Array<Alert & { resolvedAt?: number }> };
  /** Every FeedEvent from now on; returns the unsubscribe function. */
  subscribe(listener: (e: FeedEvent) => void): () => void;
}

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
  /** Prefix for /proc and /sys (tests). Defaults to '/'. */
  root?: string;
  /** Defaults to process.platform. */
  platform?: NodeJS.Platform;
  /** Start the timer. Defaults to true; false leaves sampling to sampleNow(). */
  start?: boolean;
}

export interface SamplerFacts {
  platform: NodeJS.Platform;
  totalRam: number;
  cores: number;
  cgroup?: CgroupLocation;
  thermalZones: number;
  sysfsGpus: string[];
  /** The daemon's oom_score_adj after create() made sure it is ≤ 0 (undefined off Linux). */
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
  event: [FeedEvent];
};

const MiB = 1024 * 1024;

/** Reads /proc/<pid>/oom_score_adj; undefined when unreadable. */
export function readOomScoreAdj(pid: number | 'self', root = '/'): number | undefined {
  try {
    const t = readOptionalSync(underRoot(root, `/proc/${pid}/oom_score_adj`));
    const n = t === undefined ? NaN : Number(t.trim());
    return Number.isInteger(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Makes the daemon's oom_score_adj ≤ 0, so the kernel picks a runner (500) or another program
 * before the daemon. Lowering needs CAP_SYS_RESOURCE; without it the value stays and the
 * returned figure says so (an alert is raised).
 */
export function ensureDaemonOomScore(root = '/'): number | undefined {
  const cur = readOomScoreAdj('self', root);
  if (cur === undefined || cur <= 0) return cur;
  try {
    writeFileSync(underRoot(root, '/proc/self/oom_score_adj'), '0');
  } catch {
    // not permitted: reported by the caller through the value it reads back
  }
  return readOomScoreAdj('self', root);
}

export class Sampler extends EventEmitter<SamplerEvents> implements MonitorFeed {
  readonly intervalMs: number;
  readonly facts: SamplerFacts;
  readonly thresholds: PressureThresholds;
  readonly #opts: SamplerOptions;
  readonly #root: string;
  readonly #history: RingBuffer<MonitorSample>;
  readonly #thermal: ThermalSensors;
  readonly #sysfsGpus: SysfsGpu[];
  readonly #trends: TrendTracker;
  readonly #alerts = new AlertBook(100);
  #level: LevelState = INITIAL_LEVEL;
  #prevLinux: LinuxMemorySample | undefined;
  #throttleCounts: number[] | undefined;
  #prevOomKills: number | undefined;
  #probedGpus: GpuMemory[] = [];
  #gpuProbing = false;
  #gpuProbedAt = -Infinity;
  readonly #oomChecked = new Map<number, number | undefined>();
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<MonitorSample> | undefined;
  #disposed = false;
  readonly #stats: SamplerStats = { samples: 0, failures: 0, cpuMicros: 0, lastCpuMicros: 0 };

  private constructor(
    opts: SamplerOptions,
    facts: SamplerFacts,
    thermal: ThermalSensors,
    gpus: SysfsGpu[],
  ) {
    super();
    this.#opts = opts;
    this.#root = opts.root ?? '/';
    this.facts = facts;
    this.intervalMs = opts.intervalMs ?? 1000;
    this.#history = new RingBuffer(opts.historySize ?? 600);
    this.#thermal = thermal;
    this.#sysfsGpus = gpus;
    this.thresholds =
      opts.thresholds ??
      defaultThresholds({
        nominalBytes: facts.totalRam,
        reserveBytes: facts.totalRam / 6,
        lowMemory: false,
        level: 'basic',
      });
    const trends = opts.trends ?? { windowSeconds: 300, leakMiBPerMinute: 1 };
    this.#trends = new TrendTracker(
      {
        windowSeconds: trends.windowSeconds,
        leakBytesPerSec: (trends.leakMiBPerMinute * MiB) / 60,
      },
      this.intervalMs,
    );
    // Many SSE clients may subscribe; each adds one listener.
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
    const root = opts.root ?? '/';
    const platform = opts.platform ?? process.platform;
    const linux = platform === 'linux';
    const cgroup = linux
      ? await locateMemoryCgroup('self', root).catch(() => undefined)
      : undefined;
    const thermal = linux ? locateThermal(root) : { zones: [], cooling: [], throttleCounters: [] };
    const gpus = linux ? locateSysfsGpus(root) : [];
    const oomScoreAdj = linux ? ensureDaemonOomScore(root) : undefined;
    const facts: SamplerFacts = {
      platform,
      totalRam: os.totalmem(),
      cores: os.availableParallelism(),
      ...(cgroup ? { cgroup } : {}),
      thermalZones: thermal.zones.length,
      sysfsGpus: gpus.map((g) => g.name),
      ...(oomScoreAdj === undefined ? {} : { oomScoreAdj }),
    };
    const s = new Sampler(opts, facts, thermal, gpus);
    if (oomScoreAdj !== undefined && oomScoreAdj > 0) {
      s.#alerts.raise({
        id: 'oom-score:daemon',
        severity: 'warn',
        kind: 'oom-score',
        component: 'daemon',
        message: `The daemon's oom_score_adj is ${oomScoreAdj} and could not be lowered to 0: under memory exhaustion the kernel may kill it before its runners.`,
        recommendation:
          'Run headroom with CAP_SYS_RESOURCE, or set OOMScoreAdjust=0 (or lower) in its systemd unit.',
        since: Date.now(),
        at: Date.now(),
      });
    }
    await s.sampleNow();
    if (opts.start !== false) s.#arm();
    return s;
  }

  // ------------------------------------------------------------------------------ MonitorFeed

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
    return { active: this.#alerts.active(), recent: this.#alerts.recent() };
  }

  subscribe(listener: (e: FeedEvent) => void): () => void {
    this.on('event', listener);
    return () => this.off('event', listener);
  }

  /** Adds an event from elsewhere (scheduler loads and evictions, reactions) to the stream. */
  publish(e: FeedEvent): void {
    this.emit('event', e);
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
    const sample = await this.#read(watched);
    this.#analyse(sample, watched);
    const used = process.cpuUsage(cpu0);
    this.#stats.samples++;
    this.#stats.lastCpuMicros = used.user + used.system;
    this.#stats.cpuMicros += this.#stats.lastCpuMicros;
    return sample;
  }

  async #read(watched: readonly WatchedProcess[]): Promise<MonitorSample> {
    const at = Date.now();
    const seq = ++this.#seq;
    const thermal = this.#readThermal();
    const gpus = [...readSysfsGpus(this.#sysfsGpus), ...this.#probeGpus()];
    if (this.facts.platform !== 'linux') return this.#readOther(seq, at, thermal, gpus);

    const pids = [process.pid, ...watched.map((w) => w.pid)];
    const s = await readLinuxSample({ root: this.#root, cgroup: this.facts.cgroup, pids });
    const rates = this.#prevLinux ? swapRates(this.#prevLinux, s) : { inPerSec: 0, outPerSec: 0 };
    this.#prevLinux = s;
    const byPid = new Map(s.processes.map((p) => [p.pid, p]));
    const processes: SampledProcess[] = [];
    const self = byPid.get(process.pid);
    if (self) processes.push({ role: 'daemon', name: 'headroom', ...pick(self) });
    for (const w of watched) {
      const p = byPid.get(w.pid);
      if (p && w.pid !== process.pid) processes.push({ role: 'runner', name: w.name, ...pick(p) });
    }
    const cg = s.cgroup;
    const cgPsi = cg?.pressure;
    const psi = cgPsi
      ? { some10: cgPsi.some.avg10, full10: cgPsi.full?.avg10, source: 'cgroup' as const }
      : s.pressure
        ? {
            some10: s.pressure.some.avg10,
            full10: s.pressure.full?.avg10,
            source: 'system' as const,
          }
        : undefined;
    const limit = cg?.limit;
    const available =
      limit === undefined
        ? s.available
        : Math.min(s.available, Math.max(0, limit - cg!.workingSet));
    const capacity = limit === undefined ? s.total : Math.min(s.total, limit);
    return {
      seq,
      at,
      memory: {
        total: s.total,
        available: s.available,
        free: s.free,
        swapTotal: s.swapTotal,
        swapUsed: s.swapUsed,
        swapInPerSec: Math.round(rates.inPerSec),
        swapOutPerSec: Math.round(rates.outPerSec),
      },
      ...(psi ? { psi: dropUndefined(psi) } : {}),
      ...(cg
        ? {
            cgroup: dropUndefined({
              version: cg.version,
              path: cg.path,
              usage: cg.usage,
              workingSet: cg.workingSet,
              limit: cg.limit,
              oomKills: cg.oomKills,
            }),
          }
        : {}),
      processes,
      gpus,
      thermal,
      pressure: { level: this.#level.level, reasons: [], available, capacity, excessBytes: 0 },
    };
  }

  /** macOS (vm_stat, sysctl) or anything else (Node's os figures). */
  async #readOther(
    seq: number,
    at: number,
    thermal: ThermalReading,
    gpus: GpuMemory[],
  ): Promise<MonitorSample> {
    let total = os.totalmem();
    let available = os.freemem();
    let swapTotal = 0;
    let swapUsed = 0;
    if (this.facts.platform === 'darwin') {
      const m = await readDarwinMemory({ timeoutMs: Math.max(500, this.intervalMs) });
      total = m.total;
      available = m.available;
      swapTotal = m.swap.total;
      swapUsed = m.swap.used;
    }
    const rss = process.memoryUsage.rss();
    return {
      seq,
      at,
      memory: {
        total,
        available,
        free: os.freemem(),
        swapTotal,
        swapUsed,
        swapInPerSec: 0,
        swapOutPerSec: 0,
      },
      processes: [
        {
          role: 'daemon',
          name: 'headroom',
          pid: process.pid,
          rss,
          rssAnon: rss,
          rssFile: 0,
          peak: rss,
          swap: 0,
        },
      ],
      gpus,
      thermal,
      pressure: {
        level: this.#level.level,
        reasons: [],
        available,
        capacity: total,
        excessBytes: 0,
      },
    };
  }

  #readThermal(): ThermalReading {
    const { reading, counts } = readThermal(
      this.#thermal,
      this.#throttleCounts,
      this.#opts.throttleCelsius ?? 90,
    );
    this.#throttleCounts = counts;
    return reading;
  }

  /** The last probed GPU figures; starts a new probe when due, without waiting for it. */
  #probeGpus(): GpuMemory[] {
    const probe = this.#opts.gpuProbe;
    if (!probe) return [];
    const now = performance.now();
    if (!this.#gpuProbing && now - this.#gpuProbedAt >= (this.#opts.gpuProbeEveryMs ?? 10_000)) {
      this.#gpuProbing = true;
      this.#gpuProbedAt = now;
      probe().then(
        (g) => {
          this.#probedGpus = g;
          this.#gpuProbing = false;
        },
        () => {
          this.#gpuProbing = false;
        },
      );
    }
    return this.#probedGpus;
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

    const alerts = this.#alertsFor(sample, watched);
    this.emit('sample', sample);
    this.emit('event', { type: 'sample', sample });
    if (step.changed) {
      const change: LevelChange = {
        at: sample.at,
        from,
        to: step.state.level,
        reasons: step.state.reasons,
      };
      this.emit('level-change', change);
      this.emit('event', { type: 'level-change', change });
    }
    for (const a of alerts) {
      this.emit('alert', a);
      this.emit('event', { type: 'alert', alert: a });
    }
  }

  /** Updates trends and the alert book from a sample; returns the alerts to announce. */
  #alertsFor(sample: MonitorSample, watched: readonly WatchedProcess[]): Alert[] {
    const now = sample.at;
    const idleByPid = new Map(watched.map((w) => [w.pid, w.idle]));
    const allIdle = watched.every((w) => w.idle);
    const components: ComponentReading[] = sample.processes.map((p) => ({
      key: p.role === 'daemon' ? 'daemon' : `runner:${p.name}`,
      label: p.role === 'daemon' ? 'the daemon' : `runner "${p.name}" (pid ${p.pid})`,
      pid: p.pid,
      bytes: p.rssAnon + p.swap,
      idle: p.role === 'daemon' ? allIdle : (idleByPid.get(p.pid) ?? true),
    }));
    const announce = this.#alerts.sync(
      ['leak', 'growth'],
      this.#trends.update(performance.now(), now, components, sample.pressure.available),
      now,
    );

    const level = sample.pressure.level;
    const pressure: Alert[] =
      level === 'high' || level === 'critical'
        ? [
            {
              id: 'pressure:system',
              severity: level === 'critical' ? 'critical' : 'warn',
              kind: 'pressure',
              component: 'system',
              message: `Memory pressure is ${level}: ${sample.pressure.reasons.join('; ')}.`,
              recommendation:
                level === 'critical'
                  ? 'headroom is unloading every idle model and refusing new loads. Close memory-hungry programs, unload models you do not need, or lower runner.contextSize.'
                  : 'headroom is unloading idle models, least recently used first. Unload models you do not need or use smaller contexts to stay below this level.',
              since: now,
              at: now,
              data: {
                available: sample.pressure.available,
                capacity: sample.pressure.capacity,
              },
            },
          ]
        : [];
    announce.push(...this.#alerts.sync(['pressure'], pressure, now));

    const thermal: Alert[] = sample.thermal.throttled
      ? [
          {
            id: 'thermal:cpu',
            severity: 'info',
            kind: 'thermal',
            component: 'system',
            message: `CPU thermal throttling: ${sample.thermal.reasons.join('; ')}.`,
            recommendation:
              'New loads use a smaller batch and one thread fewer until it cools down. Improve cooling or lower runner.threads.',
            since: now,
            at: now,
          },
        ]
      : [];
    announce.push(...this.#alerts.sync(['thermal'], thermal, now));

    const kills = sample.cgroup?.oomKills;
    if (kills !== undefined) {
      if (this.#prevOomKills !== undefined && kills > this.#prevOomKills) {
        const a = this.#alerts.raise({
          id: `oom-kill:${now}`,
          severity: 'critical',
          kind: 'oom-kill',
          component: 'system',
          message: `The kernel OOM-killed ${kills - this.#prevOomKills} process(es) in headroom's memory cgroup (${sample.cgroup!.path}).`,
          recommendation:
            'Lower the model budget or the number of loaded models, use smaller contexts or quantised KV caches, or raise the cgroup memory limit.',
          since: now,
          at: now,
          data: { oomKills: kills },
        });
        if (a) announce.push(a);
      }
      this.#prevOomKills = kills;
    }

    // Each new runner's oom_score_adj must exceed the daemon's (checked once per pid).
    const daemonAdj = this.facts.oomScoreAdj;
    if (daemonAdj !== undefined && this.facts.platform === 'linux') {
      for (const w of watched) {
        if (this.#oomChecked.has(w.pid)) continue;
        const adj = readOomScoreAdj(w.pid, this.#root);
        this.#oomChecked.set(w.pid, adj);
        if (adj !== undefined && adj <= daemonAdj) {
          const a = this.#alerts.raise({
            id: `oom-score:runner:${w.name}`,
            severity: 'warn',
            kind: 'oom-score',
            component: `runner:${w.name}`,
            message: `Runner "${w.name}" (pid ${w.pid}) has oom_score_adj ${adj}, not above the daemon's ${daemonAdj}: the kernel may kill the daemon first.`,
            recommendation: 'Report this: runners are started with oom_score_adj 500.',
            since: now,
            at: now,
          });
          if (a) announce.push(a);
        }
      }
      const live = new Set(watched.map((w) => w.pid));
      for (const pid of this.#oomChecked.keys()) if (!live.has(pid)) this.#oomChecked.delete(pid);
    }
    return announce;
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

function pick(p: {
  pid: number;
  rss: number;
  rssAnon: number;
  rssFile: number;
  peak: number;
  swap: number;
}): Omit<SampledProcess, 'role' | 'name'> {
  return {
    pid: p.pid,
    rss: p.rss,
    rssAnon: p.rssAnon,
    rssFile: p.rssFile,
    peak: p.peak,
    swap: p.swap,
  };
}

/** Leaves out undefined fields (exactOptionalPropertyTypes-friendly, and smaller JSON). */
function dropUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}
