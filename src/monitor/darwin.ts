/**
 * macOS memory: parsers (pure) of `vm_stat`, `sysctl` and `memory_pressure` output, and a reader
 * that runs `vm_stat` and one `sysctl` (macOS has no /proc; without native code these tools are
 * the only cheap source). The parsers are tested on captured outputs under
 * test/fixtures/monitor/darwin.
 */
import { execFile } from 'node:child_process';
import { abortReason } from '../lib/abort.js';
import { MonitorError, toNumber } from './io.js';

// ---------------------------------------------------------------------------------------------
// vm_stat

/** Page counts from `vm_stat`, and its page size (16384 on Apple Silicon, 4096 on Intel). */
export interface VmStat {
  pageSize: number;
  free: number;
  active: number;
  inactive: number;
  speculative: number;
  throttled: number;
  wired: number;
  purgeable: number;
  /** Pages the compressor occupies in RAM (holding `storedInCompressor` pages' worth of data). */
  compressor: number;
  storedInCompressor: number;
  fileBacked: number;
  anonymous: number;
  /** Cumulative counters since boot. */
  pageins: number;
  pageouts: number;
  swapins: number;
  swapouts: number;
}

const VM_STAT_KEYS: Record<string, keyof Omit<VmStat, 'pageSize'>> = {
  'Pages free': 'free',
  'Pages active': 'active',
  'Pages inactive': 'inactive',
  'Pages speculative': 'speculative',
  'Pages throttled': 'throttled',
  'Pages wired down': 'wired',
  'Pages purgeable': 'purgeable',
  'Pages occupied by compressor': 'compressor',
  'Pages stored in compressor': 'storedInCompressor',
  'File-backed pages': 'fileBacked',
  'Anonymous pages': 'anonymous',
  Pageins: 'pageins',
  Pageouts: 'pageouts',
  Swapins: 'swapins',
  Swapouts: 'swapouts',
};

/**
 * Parses `vm_stat` output: "Mach Virtual Memory Statistics: (page size of 16384 bytes)" then
 * "Pages free:      13248." lines (counts end with a period). Throws MonitorError without the
 * page-size header or the free/active/inactive/wired lines.
 */
export function parseVmStat(text: string, source = 'vm_stat'): VmStat {
  const header = /page size of (\d+) bytes/.exec(text);
  if (!header?.[1])
    throw new MonitorError(
      'MONITOR_PARSE',
      source,
      'no "page size of N bytes" header: not vm_stat output',
    );
  const out: VmStat = {
    pageSize: Number(header[1]),
    free: 0,
    active: 0,
    inactive: 0,
    speculative: 0,
    throttled: 0,
    wired: 0,
    purgeable: 0,
    compressor: 0,
    storedInCompressor: 0,
    fileBacked: 0,
    anonymous: 0,
    pageins: 0,
    pageouts: 0,
    swapins: 0,
    swapouts: 0,
  };
  const seen = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^"?([^":]+)"?:\s+([\d,]+)\.?\s*$/.exec(line);
    if (!m?.[1] || m[2] === undefined) continue;
    const key = VM_STAT_KEYS[m[1]];
    if (!key) continue;
    out[key] = toNumber(m[2].replaceAll(',', ''), source, m[1]);
    seen.add(key);
  }
  for (const k of ['free', 'active', 'inactive', 'wired'] as const) {
    if (!seen.has(k)) throw new MonitorError('MONITOR_PARSE', source, `no "${k}" pages line`);
  }
  return out;
}

/**
 * Memory available for new work without paging, in bytes: free + speculative + inactive pages
 * (psutil's definition plus speculative pages, which vm_stat counts apart from "free").
 * Purgeable pages are left out: they sit in the active/inactive queues already.
 */
export function darwinAvailable(vm: VmStat): number {
  return (vm.free + vm.speculative + vm.inactive) * vm.pageSize;
}

// ---------------------------------------------------------------------------------------------
// sysctl

/**
 * Parses `sysctl name…` output ("hw.memsize: 17179869184" lines) into name → value text.
 * Output of `sysctl -n` has no names: pass it to the specific parsers below directly.
 */
export function parseSysctl(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([a-z][\w.]*):\s?(.*)$/.exec(line.trimEnd());
    if (m?.[1] !== undefined && m[2] !== undefined) out.set(m[1], m[2]);
  }
  return out;
}

/** Parses `sysctl -n hw.memsize` ("17179869184") or a `hw.memsize: …` line: physical RAM in bytes. */
export function parseMemsize(text: string, source = 'sysctl hw.memsize'): number {
  const v = text.trim().replace(/^hw\.memsize:\s*/, '');
  if (!/^\d+$/.test(v))
    throw new MonitorError('MONITOR_PARSE', source, `not a byte count: "${v.slice(0, 80)}"`);
  return Number(v);
}

export interface DarwinSwap {
  total: number;
  used: number;
  free: number;
  encrypted: boolean;
}

const SWAP_UNITS: Record<string, number> = {
  B: 1,
  K: 1024,
  M: 1024 ** 2,
  G: 1024 ** 3,
  T: 1024 ** 4,
};

/**
 * Parses `sysctl vm.swapusage` ("vm.swapusage: total = 2048.00M  used = 1126.25M  free = 921.75M
 * (encrypted)"), with or without the name. macOS grows swap on demand: total is what exists now.
 */
export function parseSwapUsage(text: string, source = 'sysctl vm.swapusage'): DarwinSwap {
  const field = (name: string): number => {
    const m = new RegExp(`${name}\\s*=\\s*([\\d.]+)([BKMGT])?`).exec(text);
    if (!m?.[1]) throw new MonitorError('MONITOR_PARSE', source, `no "${name} = …" field`);
    return Math.round(Number(m[1]) * (SWAP_UNITS[m[2] ?? 'B'] ?? 1));
  };
  return {
    total: field('total'),
    used: field('used'),
    free: field('free'),
    encrypted: /\(encrypted\)/.test(text),
  };
}

// ---------------------------------------------------------------------------------------------
// memory_pressure

export interface DarwinMemoryPressure {
  /** Physical memory from the first line ("The system has N (P pages with a page size of S)."). */
  total?: number;
  pageSize?: number;
  /**
   * "System-wide memory free percentage": the kernel's kern.memorystatus_level, the figure
   * Activity Monitor's pressure graph is drawn from (100 minus it).
   */
  freePercent: number;
}

/**
 * Parses the output of `memory_pressure` run with no arguments, or with `-Q`. (Any other
 * argument makes the tool allocate memory to simulate pressure: never run it with those.)
 */
export function parseMemoryPressure(
  text: string,
  source = 'memory_pressure',
): DarwinMemoryPressure {
  const pct = /System-wide memory free percentage:\s*(\d+)%/.exec(text);
  if (!pct?.[1])
    throw new MonitorError('MONITOR_PARSE', source, 'no "System-wide memory free percentage" line');
  const head = /The system has (\d+) \((\d+) pages with a page size of (\d+)\)/.exec(text);
  return {
    ...(head?.[1] && head[3] ? { total: Number(head[1]), pageSize: Number(head[3]) } : {}),
    freePercent: Number(pct[1]),
  };
}

// ---------------------------------------------------------------------------------------------
// Reader

/** A snapshot of macOS memory, in bytes. */
export interface DarwinMemory {
  total: number;
  available: number;
  free: number;
  /** Compressed memory held in RAM (the compressor's pages). */
  compressed: number;
  wired: number;
  swap: DarwinSwap;
  /** kern.memorystatus_level (see DarwinMemoryPressure.freePercent); undefined when sysctl lacks it. */
  freePercent?: number;
  vm: VmStat;
}

/** Combines `vm_stat` and `sysctl hw.memsize vm.swapusage kern.memorystatus_level` output. */
export function darwinMemoryFrom(vmStatText: string, sysctlText: string): DarwinMemory {
  const vm = parseVmStat(vmStatText);
  const sys = parseSysctl(sysctlText);
  const memsize = sys.get('hw.memsize');
  const swap = sys.get('vm.swapusage');
  if (memsize === undefined)
    throw new MonitorError('MONITOR_PARSE', 'sysctl', 'no hw.memsize line');
  if (swap === undefined) throw new MonitorError('MONITOR_PARSE', 'sysctl', 'no vm.swapusage line');
  const level = sys.get('kern.memorystatus_level');
  return {
    total: parseMemsize(memsize),
    available: darwinAvailable(vm),
    free: (vm.free + vm.speculative) * vm.pageSize,
    compressed: vm.compressor * vm.pageSize,
    wired: vm.wired * vm.pageSize,
    swap: parseSwapUsage(swap),
    ...(level !== undefined && /^\d+$/.test(level.trim())
      ? { freePercent: Number(level.trim()) }
      : {}),
    vm,
  };
}

/**
 * Runs a tool without a shell. With `partial`, a non-zero exit that still printed something
 * resolves that output (sysctl exits 1 when one of several names is unknown but prints the rest).
 */
function run(
  file: string,
  args: string[],
  timeoutMs: number,
  signal: AbortSignal | undefined,
  partial = false,
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: timeoutMs, maxBuffer: 1 << 20, encoding: 'utf8', signal },
      (err, stdout) => {
        if (signal?.aborted) reject(abortReason(signal));
        else if (!err || (partial && !err.killed && err.signal == null && stdout.trim() !== ''))
          resolve(stdout);
        else reject(err);
      },
    );
  });
}

/**
 * Reads macOS memory by running `/usr/bin/vm_stat` and `/usr/sbin/sysctl` (two processes,
 * ~5 ms together), each bounded by `timeoutMs`. Rejects when a tool fails or its output does not
 * parse; callers fall back to os.totalmem()/os.freemem().
 */
export async function readDarwinMemory(
  opts: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<DarwinMemory> {
  const timeoutMs = opts.timeoutMs ?? 2000;
  const [vmText, sysText] = await Promise.all([
    run('/usr/bin/vm_stat', [], timeoutMs, opts.signal),
    run(
      '/usr/sbin/sysctl',
      ['hw.memsize', 'vm.swapusage', 'kern.memorystatus_level'],
      timeoutMs,
      opts.signal,
      true,
    ),
  ]);
  return darwinMemoryFrom(vmText, sysText);
}
