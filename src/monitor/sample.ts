/**
 * One live memory sample on Linux: the reads a sampler makes every interval. Nothing static is
 * re-read (locate the cgroup once with locateMemoryCgroup) and no process is spawned: meminfo,
 * vmstat, PSI, the cgroup's files and one status file per watched process.
 */
import type { CgroupLocation, CgroupMemory } from './cgroup.js';
import { readCgroupMemoryAt } from './cgroup.js';
import {
  readMeminfo,
  readPressure,
  readProcessMemory,
  readVmstat,
  type Pressure,
  type ProcessMemory,
} from './proc.js';

export interface ProcessSample extends ProcessMemory {
  pid: number;
}

export interface LinuxMemorySample {
  /** Milliseconds since the epoch. */
  at: number;
  /** performance.now() when the sample was taken: use it, not `at`, for rates (it never jumps). */
  mono: number;
  total: number;
  available: number;
  free: number;
  swapTotal: number;
  swapUsed: number;
  /** Cumulative pages swapped in and out since boot (/proc/vmstat); undefined without vmstat. */
  swapInPages?: number;
  swapOutPages?: number;
  /** System-wide memory PSI; undefined where the kernel has none. */
  pressure?: Pressure;
  cgroup?: CgroupMemory;
  /** The watched processes that are still alive (gone ones are left out). */
  processes: ProcessSample[];
}

export interface LinuxSampleOptions {
  /** Defaults to '/'. */
  root?: string;
  /** The cgroup to read (from locateMemoryCgroup); left out when undefined. */
  cgroup?: CgroupLocation;
  /** Processes to read (the daemon and its runners). */
  pids?: readonly number[];
}

/**
 * Reads one sample. Rejects when /proc/meminfo cannot be read (not Linux); an optional part
 * that fails (a vanished cgroup) is left out rather than failing the sample.
 */
export async function readLinuxSample(opts: LinuxSampleOptions = {}): Promise<LinuxMemorySample> {
  const root = opts.root ?? '/';
  const pids = opts.pids ?? [];
  const mono = performance.now();
  const [mem, vm, pressure, cgroup, procs] = await Promise.all([
    readMeminfo(root),
    readVmstat(root).catch(() => undefined),
    readPressure(root).catch(() => undefined),
    opts.cgroup ? readCgroupMemoryAt(opts.cgroup).catch(() => undefined) : undefined,
    Promise.all(pids.map((pid) => readProcessMemory(pid, root).catch(() => undefined))),
  ]);
  const processes: ProcessSample[] = [];
  procs.forEach((p, i) => {
    const pid = pids[i];
    if (p && pid !== undefined) processes.push({ pid, ...p });
  });
  return {
    at: Date.now(),
    mono,
    total: mem.total,
    available: mem.available,
    free: mem.free,
    swapTotal: mem.swapTotal,
    swapUsed: Math.max(0, mem.swapTotal - mem.swapFree),
    ...(vm ? { swapInPages: vm.pswpin, swapOutPages: vm.pswpout } : {}),
    ...(pressure ? { pressure } : {}),
    ...(cgroup ? { cgroup } : {}),
    processes,
  };
}

/** Page size for vmstat's swap counters: 4 KiB on x86-64 and on the common arm64 kernels. */
export const SWAP_PAGE_SIZE = 4096;

/**
 * Swap-in and swap-out rates in bytes per second between two samples; zeros when either lacks
 * the counters or no time passed. A counter that went backwards (a reboot in between) reads 0.
 */
export function swapRates(
  prev: LinuxMemorySample,
  cur: LinuxMemorySample,
  pageSize = SWAP_PAGE_SIZE,
): { inPerSec: number; outPerSec: number } {
  const secs = (cur.mono - prev.mono) / 1000;
  const rate = (a: number | undefined, b: number | undefined): number =>
    a === undefined || b === undefined || secs <= 0 ? 0 : (Math.max(0, b - a) * pageSize) / secs;
  return {
    inPerSec: rate(prev.swapInPages, cur.swapInPages),
    outPerSec: rate(prev.swapOutPages, cur.swapOutPages),
  };
}
