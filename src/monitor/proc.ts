/**
 * Linux /proc parsers (pure) and thin readers over them.
 *
 * Parsers take the file's text and return figures in BYTES (the kernel writes "kB", meaning KiB).
 * Readers read one file each, never spawn a process, and take a `root` prefix (default '/') so
 * tests can point them at captured trees under test/fixtures/monitor.
 */
import { MonitorError, readOptionalSync, toNumber, underRoot } from './io.js';

// ---------------------------------------------------------------------------------------------
// Shared: "Key:   123 kB" tables (meminfo, status, smaps_rollup)

/**
 * Parses the numeric lines of a "Key: value [kB]" file into a map of bytes (values without a
 * unit, such as HugePages_Total, are kept as they are). Lines whose value is not a number
 * ("Name:\tnode", "State:\tR (running)") are skipped.
 */
export function parseKbTable(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const m = /^\s*(\d+)(\s+kB)?\s*$/.exec(line.slice(colon + 1));
    if (!m) continue;
    const n = Number(m[1]);
    out.set(line.slice(0, colon), m[2] === undefined ? n : n * 1024);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// /proc/meminfo

/** System memory from /proc/meminfo, in bytes. */
export interface Meminfo {
  total: number;
  free: number;
  /**
   * The kernel's estimate of memory available for new work without swapping (MemAvailable,
   * Linux ≥ 3.14). Before that it is estimated as free + buffers + cached + SReclaimable - Shmem
   * and `availableEstimated` is true.
   */
  available: number;
  availableEstimated: boolean;
  buffers: number;
  cached: number;
  swapCached: number;
  swapTotal: number;
  swapFree: number;
  shmem: number;
  anonPages: number;
  mapped: number;
  dirty: number;
  sReclaimable: number;
  activeFile: number;
  inactiveFile: number;
  committedAs: number;
  commitLimit: number;
}

/** Parses /proc/meminfo. Throws MonitorError when MemTotal or MemFree is missing. */
export function parseMeminfo(text: string, source = '/proc/meminfo'): Meminfo {
  const t = parseKbTable(text);
  const total = t.get('MemTotal');
  const free = t.get('MemFree');
  if (total === undefined || free === undefined) {
    throw new MonitorError(
      'MONITOR_PARSE',
      source,
      'no MemTotal/MemFree lines: not a meminfo file',
    );
  }
  const get = (k: string): number => t.get(k) ?? 0;
  const reported = t.get('MemAvailable');
  const estimated = Math.min(
    total,
    Math.max(0, free + get('Buffers') + get('Cached') + get('SReclaimable') - get('Shmem')),
  );
  return {
    total,
    free,
    available: reported ?? estimated,
    availableEstimated: reported === undefined,
    buffers: get('Buffers'),
    cached: get('Cached'),
    swapCached: get('SwapCached'),
    swapTotal: get('SwapTotal'),
    swapFree: get('SwapFree'),
    shmem: get('Shmem'),
    anonPages: get('AnonPages'),
    mapped: get('Mapped'),
    dirty: get('Dirty'),
    sReclaimable: get('SReclaimable'),
    activeFile: get('Active(file)'),
    inactiveFile: get('Inactive(file)'),
    committedAs: get('Committed_AS'),
    commitLimit: get('CommitLimit'),
  };
}

export async function readMeminfo(root = '/'): Promise<Meminfo> {
  const file = underRoot(root, '/proc/meminfo');
  const text = readOptionalSync(file);
  if (text === undefined)
    throw new MonitorError('MONITOR_PARSE', file, 'missing: is /proc mounted?');
  return parseMeminfo(text, file);
}

// ---------------------------------------------------------------------------------------------
// /proc/<pid>/status

/** Memory of one process from /proc/<pid>/status, in bytes. */
export interface ProcStatus {
  name: string;
  /** One letter: R S D Z T t X I. */
  state: string;
  /** Resident set (VmRSS) = rssAnon + rssFile + rssShmem. */
  rss: number;
  /** Anonymous resident memory (heap, KV cache, compute buffers; what swap and OOM are about). */
  rssAnon: number;
  /** File-backed resident pages (mmap'd weights): reclaimable, shared with other mappers. */
  rssFile: number;
  rssShmem: number;
  /** Peak resident set since the process started (VmHWM). */
  peak: number;
  vmSize: number;
  vmPeak: number;
  /** Anonymous memory swapped out (VmSwap). */
  swap: number;
  threads: number;
}

/**
 * Parses /proc/<pid>/status. A zombie or kernel thread has no Vm* lines: its figures are 0.
 * On kernels before 4.5 (no RssAnon/RssFile lines) rssAnon is rss and rssFile is 0.
 * Throws MonitorError when the text has no State line.
 */
export function parseProcStatus(text: string, source = '/proc/<pid>/status'): ProcStatus {
  const stateMatch = /^State:\s+(\S)/m.exec(text);
  if (!stateMatch?.[1])
    throw new MonitorError('MONITOR_PARSE', source, 'no State line: not a status file');
  const name = /^Name:\t?(.*)$/m.exec(text)?.[1] ?? '';
  const t = parseKbTable(text);
  const rss = t.get('VmRSS') ?? 0;
  const hasSplit = t.has('RssAnon');
  return {
    name,
    state: stateMatch[1],
    rss,
    rssAnon: hasSplit ? (t.get('RssAnon') ?? 0) : rss,
    rssFile: t.get('RssFile') ?? 0,
    rssShmem: t.get('RssShmem') ?? 0,
    peak: t.get('VmHWM') ?? rss,
    vmSize: t.get('VmSize') ?? 0,
    vmPeak: t.get('VmPeak') ?? 0,
    swap: t.get('VmSwap') ?? 0,
    threads: t.get('Threads') ?? 0,
  };
}

/** The memory figures a sample keeps per process, in bytes. */
export interface ProcessMemory {
  rss: number;
  rssAnon: number;
  rssFile: number;
  rssShmem: number;
  /** VmHWM: the process's peak resident set. */
  peak: number;
  swap: number;
}

/** A pid the kernel could name: a positive safe integer, or 'self'. Throws MONITOR_BAD_ARGUMENT. */
export function checkPid(pid: number | 'self'): string {
  if (pid === 'self') return 'self';
  if (!Number.isSafeInteger(pid) || pid <= 0) {
    throw new MonitorError('MONITOR_BAD_ARGUMENT', 'pid', `not a process id: ${String(pid)}`);
  }
  return String(pid);
}

/**
 * Reads one process's memory. Resolves `undefined` when the process is gone (no /proc entry:
 * ENOENT/ESRCH) or is a zombie (exited, not yet reaped: it holds no memory).
 */
export async function readProcessMemory(
  pid: number | 'self',
  root = '/',
): Promise<ProcessMemory | undefined> {
  const file = underRoot(root, `/proc/${checkPid(pid)}/status`);
  const text = readOptionalSync(file);
  if (text === undefined) return undefined;
  const s = parseProcStatus(text, file);
  if (s.state === 'Z' || s.state === 'X') return undefined;
  return {
    rss: s.rss,
    rssAnon: s.rssAnon,
    rssFile: s.rssFile,
    rssShmem: s.rssShmem,
    peak: s.peak,
    swap: s.swap,
  };
}

// ---------------------------------------------------------------------------------------------
// /proc/<pid>/smaps_rollup (Linux ≥ 4.14): PSS, which splits shared file pages between mappers

export interface SmapsRollup {
  rss: number;
  /** Proportional set size: shared pages divided among the processes that map them. */
  pss: number;
  /** PSS split by kind (Linux ≥ 5.7); undefined on older kernels. */
  pssAnon?: number;
  pssFile?: number;
  pssShmem?: number;
  anonymous: number;
  swap: number;
  swapPss: number;
}

export function parseSmapsRollup(text: string, source = '/proc/<pid>/smaps_rollup'): SmapsRollup {
  const t = parseKbTable(text);
  const rss = t.get('Rss');
  const pss = t.get('Pss');
  if (rss === undefined || pss === undefined)
    throw new MonitorError('MONITOR_PARSE', source, 'no Rss/Pss lines');
  return {
    rss,
    pss,
    pssAnon: t.get('Pss_Anon'),
    pssFile: t.get('Pss_File'),
    pssShmem: t.get('Pss_Shmem'),
    anonymous: t.get('Anonymous') ?? 0,
    swap: t.get('Swap') ?? 0,
    swapPss: t.get('SwapPss') ?? 0,
  };
}

/**
 * Reads PSS. Costlier than status (the kernel walks every mapping: ~0.1–1 ms for a runner), so
 * call it on demand (after a load, for /admin views), not on every sample. `undefined` when the
 * process is gone or the kernel has no smaps_rollup; an empty file (a kernel thread) also gives
 * `undefined`.
 */
export async function readSmapsRollup(
  pid: number | 'self',
  root = '/',
): Promise<SmapsRollup | undefined> {
  const file = underRoot(root, `/proc/${checkPid(pid)}/smaps_rollup`);
  const text = readOptionalSync(file);
  if (text === undefined || text.trim() === '') return undefined;
  return parseSmapsRollup(text, file);
}

// ---------------------------------------------------------------------------------------------
// /proc/<pid>/stat: CPU time

/**
 * Clock ticks per second of /proc/<pid>/stat times (USER_HZ). It is 100 on every Linux
 * architecture Node.js supports; reading it would mean spawning `getconf CLK_TCK`.
 */
export const USER_HZ = 100;

export interface ProcessCpu {
  state: string;
  ppid: number;
  /** User and system CPU time in milliseconds, and their sum. */
  userMs: number;
  systemMs: number;
  cpuMs: number;
  majorFaults: number;
  threads: number;
  /** Start time in clock ticks after boot: with the pid, it identifies one process across pid reuse. */
  startTicks: number;
}

/** Parses /proc/<pid>/stat. The command name may hold spaces and parentheses: fields follow the LAST ')'. */
export function parseProcStat(text: string, source = '/proc/<pid>/stat', hz = USER_HZ): ProcessCpu {
  const close = text.lastIndexOf(')');
  if (close < 0)
    throw new MonitorError('MONITOR_PARSE', source, 'no "(comm)" field: not a stat file');
  const f = text
    .slice(close + 2)
    .trim()
    .split(' ');
  // f[0] is field 3 (state) of proc(5); field n is f[n - 3].
  if (f.length < 20) throw new MonitorError('MONITOR_PARSE', source, `only ${f.length + 2} fields`);
  const num = (i: number, what: string): number => toNumber(f[i] ?? '', source, what);
  const userMs = (num(11, 'utime') * 1000) / hz;
  const systemMs = (num(12, 'stime') * 1000) / hz;
  return {
    state: f[0] ?? '?',
    ppid: num(1, 'ppid'),
    userMs,
    systemMs,
    cpuMs: userMs + systemMs,
    majorFaults: num(9, 'majflt'),
    threads: num(17, 'num_threads'),
    startTicks: num(19, 'starttime'),
  };
}

/** Reads one process's CPU time; `undefined` when it is gone. */
export async function readProcessCpu(
  pid: number | 'self',
  root = '/',
): Promise<ProcessCpu | undefined> {
  const file = underRoot(root, `/proc/${checkPid(pid)}/stat`);
  const text = readOptionalSync(file);
  if (text === undefined || text === '') return undefined;
  return parseProcStat(text, file);
}

// ---------------------------------------------------------------------------------------------
// /proc/vmstat: swap and fault counters

/** Cumulative event counters since boot. Swap counters are in pages (4 KiB on x86-64 and most arm64). */
export interface Vmstat {
  pswpin: number;
  pswpout: number;
  pgmajfault: number;
  /** OOM kills since boot (Linux ≥ 4.13); undefined on older kernels. */
  oomKill?: number;
}

export function parseVmstat(text: string, source = '/proc/vmstat'): Vmstat {
  const wanted = new Map<string, number>();
  for (const line of text.split('\n')) {
    const space = line.indexOf(' ');
    if (space <= 0) continue;
    const key = line.slice(0, space);
    if (key === 'pswpin' || key === 'pswpout' || key === 'pgmajfault' || key === 'oom_kill') {
      wanted.set(key, toNumber(line.slice(space + 1).trim(), source, key));
    }
  }
  const pswpin = wanted.get('pswpin');
  const pswpout = wanted.get('pswpout');
  if (pswpin === undefined || pswpout === undefined) {
    throw new MonitorError('MONITOR_PARSE', source, 'no pswpin/pswpout lines: not a vmstat file');
  }
  return {
    pswpin,
    pswpout,
    pgmajfault: wanted.get('pgmajfault') ?? 0,
    oomKill: wanted.get('oom_kill'),
  };
}

export async function readVmstat(root = '/'): Promise<Vmstat | undefined> {
  const file = underRoot(root, '/proc/vmstat');
  const text = readOptionalSync(file);
  return text === undefined ? undefined : parseVmstat(text, file);
}

// ---------------------------------------------------------------------------------------------
// Pressure stall information: /proc/pressure/memory (Linux ≥ 4.20), cgroup v2 memory.pressure

export interface PressureLine {
  /** Percentage of wall time in which tasks stalled on the resource, averaged over 10/60/300 s. */
  avg10: number;
  avg60: number;
  avg300: number;
  /** Cumulative stall time in microseconds. */
  total: number;
}

/** `some`: at least one task stalled. `full`: all non-idle tasks stalled (absent for CPU on old kernels). */
export interface Pressure {
  some: PressureLine;
  full?: PressureLine;
}

export function parsePressure(text: string, source = '/proc/pressure/memory'): Pressure {
  let some: PressureLine | undefined;
  let full: PressureLine | undefined;
  for (const line of text.split('\n')) {
    const m =
      /^(some|full)\s+avg10=([\d.]+)\s+avg60=([\d.]+)\s+avg300=([\d.]+)\s+total=(\d+)\s*$/.exec(
        line,
      );
    if (!m) {
      if (line.trim() !== '')
        throw new MonitorError('MONITOR_PARSE', source, `unexpected line "${line.slice(0, 80)}"`);
      continue;
    }
    const parsed: PressureLine = {
      avg10: Number(m[2]),
      avg60: Number(m[3]),
      avg300: Number(m[4]),
      total: Number(m[5]),
    };
    if (m[1] === 'some') some = parsed;
    else full = parsed;
  }
  if (!some) throw new MonitorError('MONITOR_PARSE', source, 'no "some" line: not a pressure file');
  return full ? { some, full } : { some };
}

/**
 * Reads PSI for a resource. `undefined` when the kernel has no PSI (no file) or has it disabled
 * (psi=0 on the command line: reading fails with EOPNOTSUPP).
 */
export async function readPressure(
  root = '/',
  resource: 'memory' | 'cpu' | 'io' = 'memory',
): Promise<Pressure | undefined> {
  const file = underRoot(root, `/proc/pressure/${resource}`);
  const text = readOptionalSync(file);
  return text === undefined ? undefined : parsePressure(text, file);
}
