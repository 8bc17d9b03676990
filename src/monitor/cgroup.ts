/**
 * The memory cgroup of a process: where it is (located once) and what it holds (read per sample).
 *
 * cgroup v1 (a `memory` hierarchy, usually /sys/fs/cgroup/memory) and v2 (the unified hierarchy,
 * usually /sys/fs/cgroup) are both handled; on a hybrid system the memory controller is bound to
 * exactly one of them and that one is used. Mount points come from /proc/self/mountinfo, with the
 * conventional paths as a fallback, so containers with their own cgroup namespace and bind
 * mounts resolve to the right directory.
 */
import { access } from 'node:fs/promises';
import path from 'node:path';
import {
  MonitorError,
  isAbsentError,
  readKernelFile,
  readOptionalSync,
  toNumber,
  underRoot,
} from './io.js';
import { checkPid, parsePressure, type Pressure } from './proc.js';

/** Limits at or above 2^60 bytes are the kernel's "no limit" (v1 writes PAGE_COUNTER_MAX × page size). */
export const UNLIMITED_THRESHOLD = 2 ** 60;

// ---------------------------------------------------------------------------------------------
// Pure parsers

export interface ProcCgroupLine {
  /** Hierarchy id; 0 is the v2 unified hierarchy. */
  id: number;
  /** v1 controllers bound to the hierarchy (["memory"], ["cpu","cpuacct"], ["name=systemd"]); empty for v2. */
  controllers: string[];
  /** Path of the cgroup inside its hierarchy, e.g. "/system.slice/headroom.service". */
  path: string;
}

/** Parses /proc/<pid>/cgroup ("hierarchy-id:controller-list:path" lines). */
export function parseProcCgroup(text: string, source = '/proc/<pid>/cgroup'): ProcCgroupLine[] {
  const out: ProcCgroupLine[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const a = line.indexOf(':');
    const b = a < 0 ? -1 : line.indexOf(':', a + 1);
    if (b < 0)
      throw new MonitorError(
        'MONITOR_PARSE',
        source,
        `not "id:controllers:path": "${line.slice(0, 80)}"`,
      );
    const controllers = line.slice(a + 1, b);
    out.push({
      id: toNumber(line.slice(0, a), source, 'hierarchy id'),
      controllers: controllers === '' ? [] : controllers.split(','),
      path: line.slice(b + 1),
    });
  }
  return out;
}

export interface CgroupMount {
  /** Where the hierarchy is mounted, e.g. "/sys/fs/cgroup/memory". */
  mountPoint: string;
  /** Which cgroup of the hierarchy is the mount's root ("/" unless bind-mounted from inside). */
  root: string;
  fsType: 'cgroup' | 'cgroup2';
  /** Super options; for v1 they name the controllers ("rw", "memory"). */
  superOptions: string[];
}

/** mountinfo escapes space, tab, newline and backslash as octal (\040 …). */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses the cgroup and cgroup2 mounts out of /proc/<pid>/mountinfo; other mounts are skipped. */
export function parseCgroupMounts(text: string): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of text.split('\n')) {
    // "36 25 0:32 <root> <mount point> <options> [optional fields…] - <fstype> <source> <super options>"
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const [fsType, , superOpts] = line.slice(dash + 3).split(' ');
    if (fsType !== 'cgroup' && fsType !== 'cgroup2') continue;
    const left = line.slice(0, dash).split(' ');
    const root = left[3];
    const mountPoint = left[4];
    if (root === undefined || mountPoint === undefined) continue;
    out.push({
      mountPoint: unescapeMount(mountPoint),
      root: unescapeMount(root),
      fsType,
      superOptions: (superOpts ?? '').split(','),
    });
  }
  return out;
}

/**
 * Parses a limit file: v1 memory.limit_in_bytes ("9223372036854771712" when unlimited) or v2
 * memory.max ("max"). `undefined` means unlimited.
 */
export function parseCgroupLimit(text: string, source = 'memory.max'): number | undefined {
  const v = text.trim();
  if (v === 'max') return undefined;
  const n = toNumber(v, source, 'limit');
  return n >= UNLIMITED_THRESHOLD ? undefined : n;
}

/** Parses "key value" lines (memory.stat, memory.events, memory.oom_control) into numbers. */
export function parseFlatKeyed(text: string, source = 'memory.stat'): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const space = line.indexOf(' ');
    if (space <= 0)
      throw new MonitorError('MONITOR_PARSE', source, `not "key value": "${line.slice(0, 80)}"`);
    out.set(
      line.slice(0, space),
      toNumber(line.slice(space + 1).trim(), source, line.slice(0, space)),
    );
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Location (static: done once per process)

export interface CgroupLocation {
  version: 1 | 2;
  /** The cgroup's path as /proc/<pid>/cgroup names it. */
  path: string;
  /** The directory holding its memory.* files (root prefix included). */
  dir: string;
  /** The hierarchy's mount point (root prefix included): ancestors are looked up to here, no further. */
  mountDir: string;
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

/** The directory of cgroup `cgPath` under a mount whose root is `mountRoot`. */
function dirUnder(mountDir: string, mountRoot: string, cgPath: string): string | undefined {
  let rel: string;
  if (mountRoot === '/') rel = cgPath;
  else if (cgPath === mountRoot) rel = '';
  else if (cgPath.startsWith(`${mountRoot}/`)) rel = cgPath.slice(mountRoot.length);
  else return undefined;
  // No trailing slash: ancestors are found by walking path.dirname up to the mount point.
  return rel === '' || rel === '/' ? mountDir : path.join(mountDir, rel);
}

/**
 * Finds the memory cgroup of a process. `undefined` when there is none to read (not Linux, no
 * memory controller mounted, or the process is gone). A process whose cgroup directory is not
 * visible (a container that mounts only its own cgroup at the mount point) resolves to the mount
 * point itself.
 */
export async function locateMemoryCgroup(
  pid: number | 'self' = 'self',
  root = '/',
): Promise<CgroupLocation | undefined> {
  const cgFile = underRoot(root, `/proc/${checkPid(pid)}/cgroup`);
  const cgText = readOptionalSync(cgFile);
  if (cgText === undefined) return undefined;
  const lines = parseProcCgroup(cgText, cgFile);
  const mountText = readOptionalSync(underRoot(root, '/proc/self/mountinfo')) ?? '';
  let mounts = parseCgroupMounts(mountText);
  if (mounts.length === 0) {
    // No mountinfo (a trimmed container or fixture tree): assume the conventional layout.
    mounts = [
      {
        mountPoint: '/sys/fs/cgroup/memory',
        root: '/',
        fsType: 'cgroup',
        superOptions: ['rw', 'memory'],
      },
      { mountPoint: '/sys/fs/cgroup', root: '/', fsType: 'cgroup2', superOptions: ['rw'] },
    ];
  }

  // v1 first: on a hybrid system the memory controller is bound there, and v2 has no memory files.
  const v1Line = lines.find((l) => l.controllers.includes('memory'));
  if (v1Line) {
    for (const m of mounts) {
      if (m.fsType !== 'cgroup' || !m.superOptions.includes('memory')) continue;
      const mountDir = underRoot(root, m.mountPoint);
      if (!(await exists(path.join(mountDir, 'memory.usage_in_bytes')))) continue;
      const dir = dirUnder(mountDir, m.root, v1Line.path);
      const found = dir !== undefined && (await exists(path.join(dir, 'memory.usage_in_bytes')));
      return { version: 1, path: v1Line.path, dir: found ? dir : mountDir, mountDir };
    }
  }
  const v2Line = lines.find((l) => l.id === 0 && l.controllers.length === 0);
  if (v2Line) {
    for (const m of mounts) {
      if (m.fsType !== 'cgroup2') continue;
      const mountDir = underRoot(root, m.mountPoint);
      const controllers = readOptionalSync(path.join(mountDir, 'cgroup.controllers'));
      if (controllers === undefined || !controllers.split(/\s+/).includes('memory')) continue;
      const dir = dirUnder(mountDir, m.root, v2Line.path);
      const found = dir !== undefined && (await exists(path.join(dir, 'memory.current')));
      if (found) return { version: 2, path: v2Line.path, dir, mountDir };
      // The root cgroup has no memory.current; a namespaced container sees its own cgroup at the mount point.
      if (await exists(path.join(mountDir, 'memory.current')))
        return { version: 2, path: v2Line.path, dir: mountDir, mountDir };
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Reading (per sample)

export interface CgroupMemory {
  version: 1 | 2;
  path: string;
  /**
   * The effective memory limit in bytes: the smallest limit of the cgroup and its ancestors
   * (v1: hierarchical_memory_limit; v2: memory.max up the tree). `undefined` when unlimited.
   */
  limit?: number;
  /** Memory charged to the cgroup, page cache included (v1 memory.usage_in_bytes, v2 memory.current). */
  usage: number;
  /**
   * usage minus inactive file pages: what the kernel cannot easily reclaim, and what the
   * container tools call the working set. Pressure decisions should use this, not usage.
   */
  workingSet: number;
  /** Anonymous and file-backed memory of the cgroup, from memory.stat. */
  anon: number;
  file: number;
  /** Peak usage (v1 memory.max_usage_in_bytes; v2 memory.peak, Linux ≥ 5.19). */
  peak?: number;
  /** Processes the OOM killer killed in this cgroup (v1 memory.oom_control, Linux ≥ 4.13; v2 memory.events). */
  oomKills?: number;
  /** v2 only: times the cgroup hit its limit and reclaim failed (memory.events "oom"). */
  oomEvents?: number;
  /** v2 only: times usage went over memory.high and was throttled (memory.events "high"). */
  highEvents?: number;
  /** v2 only: memory.high, the throttling threshold; undefined when 'max'. */
  high?: number;
  /** v2 only: PSI of the cgroup (memory.pressure). */
  pressure?: Pressure;
}

function readRequired(dir: string, name: string): string {
  const file = path.join(dir, name);
  try {
    return readKernelFile(file);
  } catch (err) {
    if (isAbsentError(err))
      throw new MonitorError(
        'MONITOR_PARSE',
        file,
        'missing: the cgroup was removed or is not a memory cgroup',
        { cause: err },
      );
    throw err;
  }
}

function readV1(loc: CgroupLocation): CgroupMemory {
  const usageText = readRequired(loc.dir, 'memory.usage_in_bytes');
  const limitText = readRequired(loc.dir, 'memory.limit_in_bytes');
  const statText = readRequired(loc.dir, 'memory.stat');
  const peakText = readOptionalSync(path.join(loc.dir, 'memory.max_usage_in_bytes'));
  const oomText = readOptionalSync(path.join(loc.dir, 'memory.oom_control'));
  const usage = toNumber(usageText.trim(), path.join(loc.dir, 'memory.usage_in_bytes'), 'usage');
  const stat = parseFlatKeyed(statText, path.join(loc.dir, 'memory.stat'));
  const own = parseCgroupLimit(limitText, path.join(loc.dir, 'memory.limit_in_bytes'));
  const hierarchical = stat.get('hierarchical_memory_limit');
  const limits = [
    own,
    hierarchical !== undefined && hierarchical < UNLIMITED_THRESHOLD ? hierarchical : undefined,
  ];
  const limit = minDefined(limits);
  // total_* figures include descendants, as usage_in_bytes does.
  const inactiveFile = stat.get('total_inactive_file') ?? stat.get('inactive_file') ?? 0;
  const oom =
    oomText === undefined
      ? undefined
      : parseFlatKeyed(oomText, path.join(loc.dir, 'memory.oom_control'));
  return {
    version: 1,
    path: loc.path,
    ...(limit === undefined ? {} : { limit }),
    usage,
    workingSet: Math.max(0, usage - inactiveFile),
    anon: stat.get('total_rss') ?? stat.get('rss') ?? 0,
    file: stat.get('total_cache') ?? stat.get('cache') ?? 0,
    ...(peakText === undefined
      ? {}
      : { peak: toNumber(peakText.trim(), 'memory.max_usage_in_bytes', 'peak') }),
    ...(oom?.get('oom_kill') === undefined ? {} : { oomKills: oom.get('oom_kill') }),
  };
}

function minDefined(values: readonly (number | undefined)[]): number | undefined {
  let min: number | undefined;
  for (const v of values) if (v !== undefined && (min === undefined || v < min)) min = v;
  return min;
}

/** memory.max of each ancestor of `dir` strictly below `mountDir` (the root cgroup has no memory.max). */
function v2AncestorLimits(dir: string, mountDir: string): (number | undefined)[] {
  const out: (number | undefined)[] = [];
  for (
    let d = path.dirname(dir);
    d.length > mountDir.length && d.startsWith(mountDir);
    d = path.dirname(d)
  ) {
    const file = path.join(d, 'memory.max');
    const text = readOptionalSync(file);
    out.push(text === undefined ? undefined : parseCgroupLimit(text, file));
  }
  return out;
}

function readV2(loc: CgroupLocation): CgroupMemory {
  const currentText = readRequired(loc.dir, 'memory.current');
  const maxText = readRequired(loc.dir, 'memory.max');
  const statText = readRequired(loc.dir, 'memory.stat');
  const peakText = readOptionalSync(path.join(loc.dir, 'memory.peak'));
  const eventsText = readOptionalSync(path.join(loc.dir, 'memory.events'));
  const highText = readOptionalSync(path.join(loc.dir, 'memory.high'));
  const pressureText = readOptionalSync(path.join(loc.dir, 'memory.pressure'));
  const ancestors = v2AncestorLimits(loc.dir, loc.mountDir);
  const usage = toNumber(currentText.trim(), path.join(loc.dir, 'memory.current'), 'usage');
  const stat = parseFlatKeyed(statText, path.join(loc.dir, 'memory.stat'));
  const limit = minDefined([
    parseCgroupLimit(maxText, path.join(loc.dir, 'memory.max')),
    ...ancestors,
  ]);
  const events =
    eventsText === undefined
      ? undefined
      : parseFlatKeyed(eventsText, path.join(loc.dir, 'memory.events'));
  const high =
    highText === undefined
      ? undefined
      : parseCgroupLimit(highText, path.join(loc.dir, 'memory.high'));
  // memory.pressure exists only with PSI on; reading it fails with EOPNOTSUPP when PSI is disabled (readOptionalSync reads that as absent).
  const pressure =
    pressureText === undefined || pressureText.trim() === ''
      ? undefined
      : parsePressure(pressureText, path.join(loc.dir, 'memory.pressure'));
  return {
    version: 2,
    path: loc.path,
    ...(limit === undefined ? {} : { limit }),
    usage,
    workingSet: Math.max(0, usage - (stat.get('inactive_file') ?? 0)),
    anon: stat.get('anon') ?? 0,
    file: stat.get('file') ?? 0,
    ...(peakText === undefined ? {} : { peak: toNumber(peakText.trim(), 'memory.peak', 'peak') }),
    ...(events?.get('oom_kill') === undefined ? {} : { oomKills: events.get('oom_kill') }),
    ...(events?.get('oom') === undefined ? {} : { oomEvents: events.get('oom') }),
    ...(events?.get('high') === undefined ? {} : { highEvents: events.get('high') }),
    ...(high === undefined ? {} : { high }),
    ...(pressure === undefined ? {} : { pressure }),
  };
}

/**
 * Reads the memory figures of a located cgroup (5–7 small files plus memory.max of each v2
 * ancestor). Rejects with MonitorError when its required files vanished (the cgroup was
 * removed): locate it again.
 */
export async function readCgroupMemoryAt(loc: CgroupLocation): Promise<CgroupMemory> {
  return loc.version === 1 ? readV1(loc) : readV2(loc);
}

/**
 * Locates and reads the memory cgroup of a process in one call. `undefined` when there is no
 * memory cgroup to read. A sampler should call locateMemoryCgroup once and readCgroupMemoryAt
 * per sample instead.
 */
export async function readCgroupMemory(
  pid: number | 'self' = 'self',
  root = '/',
): Promise<CgroupMemory | undefined> {
  const loc = await locateMemoryCgroup(pid, root);
  return loc === undefined ? undefined : readCgroupMemoryAt(loc);
}
