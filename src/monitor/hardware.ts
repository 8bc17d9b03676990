/**
 * The hardware snapshot the planner plans against: RAM, swap, cores, the daemon's memory cgroup,
 * and GPUs with their free memory.
 *
 * Static facts (total RAM, cores, where nvidia-smi is, where the cgroup is) are read once per
 * process and cached; a snapshot re-reads only what changes. A snapshot never fails because
 * of an optional source: a missing cgroup, a failing nvidia-smi or a throwing VRAM probe leaves
 * that part out. It rejects only when its signal aborts.
 */
import { execFile } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { abortReason, raceAbort, throwIfAborted } from '../lib/abort.js';
import {
  locateMemoryCgroup,
  readCgroupMemoryAt,
  type CgroupLocation,
  type CgroupMemory,
} from './cgroup.js';
import { readDarwinMemory } from './darwin.js';
import { MonitorError } from './io.js';
import { readMeminfo } from './proc.js';

// ---------------------------------------------------------------------------------------------
// GPUs

export interface GpuInfo {
  index: number;
  name: string;
  /** Device memory in bytes. */
  total: number;
  free: number;
  source: 'node-llama-cpp' | 'nvidia-smi';
  /** Memory shared with the CPU (Apple Silicon, some integrated GPUs): do not add it to RAM. */
  unified?: boolean;
}

/** One row of `nvidia-smi --query-gpu=index,name,memory.total,memory.free --format=csv,noheader,nounits`. */
export interface NvidiaSmiGpu {
  index: number;
  name: string;
  /** Bytes (nvidia-smi reports MiB). */
  total: number;
  free: number;
}

/** The arguments the parser below expects nvidia-smi to be run with. */
export const NVIDIA_SMI_ARGS = [
  '--query-gpu=index,name,memory.total,memory.free',
  '--format=csv,noheader,nounits',
] as const;

const MIB = 1024 * 1024;

/**
 * Parses nvidia-smi's CSV ("0, NVIDIA H100 80GB HBM3, 81559, 81004" per GPU, memory in MiB).
 * Rows whose memory reads "[N/A]" or "[Not Supported]" (unified-memory boards) are left out:
 * there is nothing to plan against. Throws MonitorError on a row that is not index, name, total, free.
 */
export function parseNvidiaSmiCsv(text: string, source = 'nvidia-smi'): NvidiaSmiGpu[] {
  const out: NvidiaSmiGpu[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const parts = line.split(',').map((p) => p.trim());
    if (parts.length < 4)
      throw new MonitorError(
        'MONITOR_PARSE',
        source,
        `not "index, name, total, free": "${line.slice(0, 120)}"`,
      );
    const index = Number(parts[0]);
    const total = parts[parts.length - 2] ?? '';
    const free = parts[parts.length - 1] ?? '';
    if (!/^\d+$/.test(parts[0] ?? ''))
      throw new MonitorError('MONITOR_PARSE', source, `bad GPU index in "${line.slice(0, 120)}"`);
    if (!/^\d+$/.test(total) || !/^\d+$/.test(free)) {
      if (/^\[.*\]$/.test(total) || /^\[.*\]$/.test(free)) continue;
      throw new MonitorError(
        'MONITOR_PARSE',
        source,
        `bad memory figures in "${line.slice(0, 120)}"`,
      );
    }
    out.push({
      index,
      name: parts.slice(1, -2).join(', '),
      total: Number(total) * MIB,
      free: Number(free) * MIB,
    });
  }
  return out;
}

const executableCache = new Map<string, Promise<string | undefined>>();

/** The first executable called `name` on PATH (cached per name: PATH lookups are static facts). */
export function findExecutable(name: string): Promise<string | undefined> {
  let found = executableCache.get(name);
  if (!found) {
    found = (async () => {
      const names = process.platform === 'win32' ? [`${name}.exe`, name] : [name];
      for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
        if (dir === '') continue;
        for (const n of names) {
          const candidate = path.join(dir, n);
          try {
            await access(candidate, fsConstants.X_OK);
            return candidate;
          } catch {
            // not here
          }
        }
      }
      return undefined;
    })();
    executableCache.set(name, found);
  }
  return found;
}

/**
 * Runs nvidia-smi once (no shell, bounded by `timeoutMs`) and returns its GPUs; `[]` when it is
 * not installed, fails (no driver), times out or prints something unparsable. Rejects only
 * when `signal` aborts.
 */
export async function readNvidiaSmi(
  opts: { command?: string; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<GpuInfo[]> {
  throwIfAborted(opts.signal);
  const command = opts.command ?? (await findExecutable('nvidia-smi'));
  if (command === undefined) return [];
  const text = await new Promise<string | undefined>((resolve, reject) => {
    execFile(
      command,
      [...NVIDIA_SMI_ARGS],
      {
        timeout: opts.timeoutMs ?? 2000,
        maxBuffer: 1 << 20,
        encoding: 'utf8',
        signal: opts.signal,
        windowsHide: true,
      },
      (err, stdout) => {
        if (opts.signal?.aborted) reject(abortReason(opts.signal));
        else resolve(err ? undefined : stdout);
      },
    );
  });
  if (text === undefined) return [];
  try {
    return parseNvidiaSmiCsv(text).map((g) => ({ ...g, source: 'nvidia-smi' as const }));
  } catch {
    return [];
  }
}

/**
 * What node-llama-cpp reports: `llama.gpu`, `await llama.getGpuDeviceNames()` and
 * `await llama.getVramState()`. node-llama-cpp sums memory over all devices it uses.
 */
export interface LlamaVramState {
  gpu: string | false;
  deviceNames: readonly string[];
  total: number;
  free: number;
  /** Bytes of `total` that are shared with the CPU (Metal); 0 for discrete GPUs. */
  unifiedSize?: number;
}

/**
 * A function the composition root builds over its `Llama` instance. The monitor does not import
 * node-llama-cpp: `getLlama()` takes ~0.5 s, so asking it is the caller's choice.
 */
export type LlamaVramProbe = (signal: AbortSignal) => Promise<LlamaVramState>;

/**
 * Turns node-llama-cpp's state into GpuInfo. It sums several devices into one figure, so
 * several devices become one entry named after all of them. `gpu: false` (a CPU-only build)
 * means no GPU the runners can use: `[]`.
 */
export function gpusFromLlama(state: LlamaVramState): GpuInfo[] {
  if (state.gpu === false || state.total <= 0) return [];
  const name = state.deviceNames.length > 0 ? state.deviceNames.join(' + ') : state.gpu;
  return [
    {
      index: 0,
      name,
      total: state.total,
      free: Math.max(0, Math.min(state.free, state.total)),
      source: 'node-llama-cpp',
      ...((state.unifiedSize ?? 0) > 0 ? { unified: true } : {}),
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Snapshot

export interface HardwareSnapshot {
  platform: NodeJS.Platform;
  /** Milliseconds since the epoch. */
  takenAt: number;
  /** Physical RAM in bytes (read once per process and cached). */
  totalRam: number;
  /** Memory available for new work without swapping (Linux MemAvailable; macOS free + inactive + speculative). */
  available: number;
  swapTotal: number;
  swapFree: number;
  /** os.availableParallelism(): the CPUs this process may run on. */
  cores: number;
  /** The daemon's memory cgroup (Linux), when it has one. */
  cgroup?: CgroupMemory;
  gpus: GpuInfo[];
}

export interface HardwareSnapshotOptions {
  /** Prefix for /proc and /sys (tests point it at a fixture tree). Defaults to '/'. */
  root?: string;
  /** Defaults to process.platform. */
  platform?: NodeJS.Platform;
  /** Whose cgroup to report. Defaults to 'self'. */
  pid?: number | 'self';
  /** Look for GPUs at all. Defaults to true. */
  gpus?: boolean;
  /** node-llama-cpp's view of the GPUs; preferred over nvidia-smi when given and it answers. */
  llamaVram?: LlamaVramProbe;
  /** nvidia-smi to run: a path, or false to never run it. Defaults to the one on PATH, if any. */
  nvidiaSmi?: string | false;
  /** Time limit for each tool or probe. Defaults to 2000 ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface StaticFacts {
  totalRam?: number;
  cgroup?: Promise<CgroupLocation | undefined>;
}

const staticFacts = new Map<string, StaticFacts>();

function factsFor(platform: string, root: string, pid: number | 'self'): StaticFacts {
  const key = `${platform}\0${root}\0${pid}`;
  let f = staticFacts.get(key);
  if (!f) {
    f = {};
    staticFacts.set(key, f);
  }
  return f;
}

/** Forgets cached static facts (tests; a host whose RAM was hot-plugged). */
export function clearHardwareCache(): void {
  staticFacts.clear();
  executableCache.clear();
}

async function readCgroup(
  facts: StaticFacts,
  pid: number | 'self',
  root: string,
): Promise<CgroupMemory | undefined> {
  facts.cgroup ??= locateMemoryCgroup(pid, root).catch(() => undefined);
  const loc = await facts.cgroup;
  if (!loc) return undefined;
  try {
    return await readCgroupMemoryAt(loc);
  } catch {
    // The cgroup moved or vanished: locate it again next time.
    facts.cgroup = undefined;
    return undefined;
  }
}

async function readGpus(opts: HardwareSnapshotOptions, timeoutMs: number): Promise<GpuInfo[]> {
  if (opts.gpus === false) return [];
  if (opts.llamaVram) {
    const signal = opts.signal
      ? AbortSignal.any([opts.signal, AbortSignal.timeout(timeoutMs)])
      : AbortSignal.timeout(timeoutMs);
    try {
      // raceAbort: a probe that ignores its signal still cannot hold the snapshot past the limit.
      return gpusFromLlama(await raceAbort(opts.llamaVram(signal), signal));
    } catch {
      throwIfAborted(opts.signal);
      // fall through to nvidia-smi
    }
  }
  if (opts.nvidiaSmi === false) return [];
  return readNvidiaSmi({
    ...(opts.nvidiaSmi ? { command: opts.nvidiaSmi } : {}),
    timeoutMs,
    signal: opts.signal,
  });
}

interface RamFigures {
  totalRam: number;
  available: number;
  swapTotal: number;
  swapFree: number;
}

async function readRam(
  platform: string,
  root: string,
  facts: StaticFacts,
  opts: HardwareSnapshotOptions,
  timeoutMs: number,
): Promise<RamFigures> {
  if (platform === 'linux') {
    try {
      const m = await readMeminfo(root);
      facts.totalRam ??= m.total;
      return {
        totalRam: facts.totalRam,
        available: m.available,
        swapTotal: m.swapTotal,
        swapFree: m.swapFree,
      };
    } catch {
      // no /proc: fall through to what Node.js knows
    }
  } else if (platform === 'darwin') {
    try {
      const m = await readDarwinMemory({ timeoutMs, signal: opts.signal });
      facts.totalRam ??= m.total;
      return {
        totalRam: facts.totalRam,
        available: m.available,
        swapTotal: m.swap.total,
        swapFree: m.swap.free,
      };
    } catch {
      throwIfAborted(opts.signal);
    }
  }
  facts.totalRam ??= os.totalmem();
  return { totalRam: facts.totalRam, available: os.freemem(), swapTotal: 0, swapFree: 0 };
}

/**
 * Takes a hardware snapshot. Cost on Linux: meminfo and 3–8 cgroup files (< 0.5 ms) plus one
 * nvidia-smi run (~50–300 ms) when it is installed, or the VRAM probe when given.
 */
export async function hardwareSnapshot(
  opts: HardwareSnapshotOptions = {},
): Promise<HardwareSnapshot> {
  throwIfAborted(opts.signal);
  const platform = opts.platform ?? process.platform;
  const root = opts.root ?? '/';
  const pid = opts.pid ?? 'self';
  const timeoutMs = opts.timeoutMs ?? 2000;
  const facts = factsFor(platform, root, pid);
  const [ram, cgroup, gpus] = await Promise.all([
    readRam(platform, root, facts, opts, timeoutMs),
    platform === 'linux' ? readCgroup(facts, pid, root) : Promise.resolve(undefined),
    readGpus(opts, timeoutMs),
  ]);
  throwIfAborted(opts.signal);
  return {
    platform,
    takenAt: Date.now(),
    ...ram,
    cores: os.availableParallelism(),
    ...(cgroup ? { cgroup } : {}),
    gpus,
  };
}
