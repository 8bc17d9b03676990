/**
 * Reading the machine: where its memory facts live (located once) and one reading of them.
 *
 * Cost contract (Linux): static facts (where the cgroup is, which sensors exist, total RAM) are
 * located once in locate(); a reading reads ~10 small kernel files plus one status file per
 * watched process, synchronously into a reused buffer (io.ts), and spawns no process. GPU memory
 * from an injected probe (nvidia-smi, node-llama-cpp) runs at its own slower cadence, off the
 * reading path. On macOS a reading runs vm_stat and sysctl (there is no /proc); elsewhere it
 * uses Node's figures.
 */
import os from 'node:os';
import { locateMemoryCgroup, type CgroupLocation } from './cgroup.js';
import { readDarwinMemory } from './darwin.js';
import type { MonitorSample, SampledProcess, WatchedProcess } from './feed.js';
import { readOptionalSync, underRoot } from './io.js';
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

export interface MachineFacts {
  platform: NodeJS.Platform;
  totalRam: number;
  cores: number;
  cgroup?: CgroupLocation;
  thermalZones: number;
  sysfsGpus: string[];
}

export interface ReaderOptions {
  /** °C at which a zone without a trip point counts as throttling. Defaults to 90. */
  throttleCelsius?: number;
  /** GPU memory not visible in sysfs (NVIDIA): probed every `gpuProbeEveryMs` (default 10 s), off the reading path. */
  gpuProbe?: () => Promise<GpuMemory[]>;
  gpuProbeEveryMs?: number;
  /** The most a macOS reading's tools may take, ms. Defaults to 1000 (at least 500). */
  toolTimeoutMs?: number;
  /** Prefix for /proc and /sys (tests). Defaults to '/'. */
  root?: string;
  /** Defaults to process.platform. */
  platform?: NodeJS.Platform;
}

/**
 * One reading: a sample before the pressure analysis, with the room it found — bytes available
 * for new work (min(MemAvailable, cgroup limit − working set)) and the capacity (min(total RAM,
 * cgroup limit)).
 */
export type MachineReading = Omit<MonitorSample, 'pressure'> & {
  room: { available: number; capacity: number };
};

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

export class MachineReader {
  readonly facts: MachineFacts;
  readonly #opts: ReaderOptions;
  readonly #root: string;
  readonly #thermal: ThermalSensors;
  readonly #sysfsGpus: SysfsGpu[];
  #prevLinux: LinuxMemorySample | undefined;
  #throttleCounts: number[] | undefined;
  #probedGpus: GpuMemory[] = [];
  #gpuProbing = false;
  #gpuProbedAt = -Infinity;

  private constructor(
    opts: ReaderOptions,
    facts: MachineFacts,
    thermal: ThermalSensors,
    gpus: SysfsGpu[],
  ) {
    this.#opts = opts;
    this.#root = opts.root ?? '/';
    this.facts = facts;
    this.#thermal = thermal;
    this.#sysfsGpus = gpus;
  }

  /** Locates the static facts: the memory cgroup, thermal sensors, sysfs GPUs, RAM, cores. */
  static async locate(opts: ReaderOptions = {}): Promise<MachineReader> {
    const root = opts.root ?? '/';
    const platform = opts.platform ?? process.platform;
    const linux = platform === 'linux';
    const cgroup = linux
      ? await locateMemoryCgroup('self', root).catch(() => undefined)
      : undefined;
    const thermal = linux ? locateThermal(root) : { zones: [], cooling: [], throttleCounters: [] };
    const gpus = linux ? locateSysfsGpus(root) : [];
    const facts: MachineFacts = {
      platform,
      totalRam: os.totalmem(),
      cores: os.availableParallelism(),
      ...(cgroup ? { cgroup } : {}),
      thermalZones: thermal.zones.length,
      sysfsGpus: gpus.map((g) => g.name),
    };
    return new MachineReader(opts, facts, thermal, gpus);
  }

  /** Reads memory, swap rates (since the last reading), PSI, the cgroup, processes, GPUs, heat. */
  async read(seq: number, at: number, watched: readonly WatchedProcess[]): Promise<MachineReading> {
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
      room: { available, capacity },
    };
  }

  /** macOS (vm_stat, sysctl) or anything else (Node's os figures). */
  async #readOther(
    seq: number,
    at: number,
    thermal: ThermalReading,
    gpus: GpuMemory[],
  ): Promise<MachineReading> {
    let total = os.totalmem();
    let available = os.freemem();
    let swapTotal = 0;
    let swapUsed = 0;
    if (this.facts.platform === 'darwin') {
      const m = await readDarwinMemory({
        timeoutMs: Math.max(500, this.#opts.toolTimeoutMs ?? 1000),
      });
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
      room: { available, capacity: total },
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
