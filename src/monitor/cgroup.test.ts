import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  locateMemoryCgroup,
  parseCgroupLimit,
  parseCgroupMounts,
  parseFlatKeyed,
  parseProcCgroup,
  readCgroupMemory,
  readCgroupMemoryAt,
  UNLIMITED_THRESHOLD,
} from './cgroup.js';
import { MonitorError } from './io.js';

const FIX = fileURLToPath(new URL('../../test/fixtures/monitor/', import.meta.url));
const V1 = `${FIX}linux-v1`;
const V2 = `${FIX}linux-v2`;
const fixture = (p: string): string => readFileSync(`${FIX}${p}`, 'utf8');
const GiB = 1024 ** 3;
const SANDBOX = '/process_api/0c3f0bb2168ea051f86680022849cd71';

describe('parsers', () => {
  it('parses /proc/<pid>/cgroup of a v1 hybrid host', () => {
    const lines = parseProcCgroup(fixture('linux-v1/proc/self/cgroup'));
    expect(lines).toHaveLength(10);
    expect(lines.find((l) => l.controllers.includes('memory'))).toEqual({
      id: 4,
      controllers: ['memory'],
      path: SANDBOX,
    });
    expect(lines.find((l) => l.id === 0)).toEqual({ id: 0, controllers: [], path: '/' });
    expect(lines.find((l) => l.id === 9)!.controllers).toEqual(['name=systemd']);
  });

  it('keeps colons inside a path', () => {
    expect(parseProcCgroup('0::/a:b\n')[0]!.path).toBe('/a:b');
  });

  it('rejects a line that is not id:controllers:path', () => {
    expect(() => parseProcCgroup('garbage\n')).toThrow(MonitorError);
    expect(() => parseProcCgroup('x::/\n')).toThrow(MonitorError);
  });

  it('finds the cgroup mounts in mountinfo', () => {
    const mounts = parseCgroupMounts(fixture('linux-v1/proc/self/mountinfo'));
    expect(mounts.find((m) => m.superOptions.includes('memory'))).toEqual({
      mountPoint: '/sys/fs/cgroup/memory',
      root: '/',
      fsType: 'cgroup',
      superOptions: ['rw', 'memory'],
    });
    expect(mounts.filter((m) => m.fsType === 'cgroup2').map((m) => m.mountPoint)).toEqual([
      '/sys/fs/cgroup/unified',
    ]);
    expect(mounts.some((m) => m.mountPoint === '/proc')).toBe(false);
    const v2 = parseCgroupMounts(fixture('linux-v2/proc/self/mountinfo'));
    expect(v2).toEqual([
      {
        mountPoint: '/sys/fs/cgroup',
        root: '/',
        fsType: 'cgroup2',
        superOptions: ['rw', 'nsdelegate', 'memory_recursiveprot'],
      },
    ]);
  });

  it('unescapes octal escapes in mount paths', () => {
    const [m] = parseCgroupMounts(
      '40 31 0:37 /docker/a\\040b /sys/fs/cgroup/my\\040mem rw - cgroup cgroup rw,memory\n',
    );
    expect(m!.mountPoint).toBe('/sys/fs/cgroup/my mem');
    expect(m!.root).toBe('/docker/a b');
  });

  it('reads limits: max and PAGE_COUNTER_MAX are unlimited', () => {
    expect(parseCgroupLimit('max\n')).toBeUndefined();
    expect(parseCgroupLimit('9223372036854771712\n')).toBeUndefined();
    expect(parseCgroupLimit(String(UNLIMITED_THRESHOLD))).toBeUndefined();
    expect(parseCgroupLimit('4294967296\n')).toBe(4 * GiB);
    expect(() => parseCgroupLimit('lots')).toThrow(MonitorError);
    expect(() => parseCgroupLimit('')).toThrow(MonitorError);
  });

  it('reads flat keyed files', () => {
    const oom = parseFlatKeyed(fixture('linux-v1/sys/fs/cgroup/memory/memory.oom_control'));
    expect([...oom]).toEqual([
      ['oom_kill_disable', 0],
      ['under_oom', 0],
      ['oom_kill', 0],
    ]);
    expect(
      parseFlatKeyed(
        fixture('linux-v2/sys/fs/cgroup/system.slice/headroom.service/memory.events'),
      ).get('oom_kill'),
    ).toBe(1);
    expect(() => parseFlatKeyed('anon\n')).toThrow(MonitorError);
    expect(() => parseFlatKeyed('anon lots\n')).toThrow(MonitorError);
  });
});

describe('cgroup v1 (captured hybrid host)', () => {
  it('locates the memory hierarchy, not the unified one', async () => {
    const loc = await locateMemoryCgroup('self', V1);
    expect(loc).toEqual({
      version: 1,
      path: SANDBOX,
      dir: path.join(V1, '/sys/fs/cgroup/memory', SANDBOX),
      mountDir: path.join(V1, '/sys/fs/cgroup/memory'),
    });
  });

  it('reads an unlimited cgroup', async () => {
    const m = await readCgroupMemory('self', V1);
    expect(m).toEqual({
      version: 1,
      path: SANDBOX,
      usage: 5910528,
      workingSet: 5910528 - 520192,
      anon: 1888256,
      file: 2011136,
      peak: 105750528,
      oomKills: 0,
    });
    expect(m!.limit).toBeUndefined();
  });

  it('reads a limited cgroup with OOM kills', async () => {
    const m = await readCgroupMemory(4343, V1);
    expect(m).toMatchObject({
      version: 1,
      path: '/headroom-test',
      limit: 4 * GiB,
      usage: 3758096384,
      workingSet: 3758096384 - 805306368,
      anon: 2667577344,
      file: 1073741824,
      peak: 4 * GiB,
      oomKills: 2,
    });
  });

  it('gives undefined for a process that is not there', async () => {
    expect(await readCgroupMemory(99999, V1)).toBeUndefined();
  });
});

describe('cgroup v2 (authored systemd host)', () => {
  it('reads a service with a limit, a peak, OOM events and PSI', async () => {
    const m = await readCgroupMemory('self', V2);
    expect(m).toEqual({
      version: 2,
      path: '/system.slice/headroom.service',
      limit: 8 * GiB,
      usage: 4584873984,
      workingSet: 4584873984 - 2810372096,
      anon: 1583849472,
      file: 2952790016,
      peak: 6012649472,
      oomKills: 1,
      oomEvents: 1,
      highEvents: 0,
      pressure: {
        some: { avg10: 4.61, avg60: 1.93, avg300: 0.44, total: 3310457 },
        full: { avg10: 3.02, avg60: 1.27, avg300: 0.29, total: 2150841 },
      },
    });
  });

  it('takes the smallest limit up the tree, and leaves out files an older kernel lacks', async () => {
    const m = await readCgroupMemory(4242, V2);
    expect(m).toMatchObject({ version: 2, limit: 12 * GiB, usage: 1073741824, oomKills: 0 });
    expect(m!.peak).toBeUndefined();
    expect(m!.pressure).toBeUndefined();
    expect(m!.high).toBeUndefined();
  });
});

describe('layouts seen in containers (temporary trees)', () => {
  let tmp: string | undefined;
  afterEach(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
    tmp = undefined;
  });

  async function tree(files: Record<string, string>): Promise<string> {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'headroom-cgroup-'));
    for (const [rel, text] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(tmp, rel)), { recursive: true });
      await writeFile(path.join(tmp, rel), text);
    }
    return tmp;
  }

  it('falls back to the conventional v2 mount without mountinfo', async () => {
    const root = await tree({
      'proc/self/cgroup': '0::/app\n',
      'sys/fs/cgroup/cgroup.controllers': 'cpu memory pids\n',
      'sys/fs/cgroup/app/memory.current': '1000\n',
      'sys/fs/cgroup/app/memory.max': '2000\n',
      'sys/fs/cgroup/app/memory.stat': 'anon 600\nfile 400\ninactive_file 100\n',
    });
    expect(await readCgroupMemory('self', root)).toEqual({
      version: 2,
      path: '/app',
      limit: 2000,
      usage: 1000,
      workingSet: 900,
      anon: 600,
      file: 400,
    });
  });

  it('uses the mount point when a namespaced container sees its cgroup as "/"', async () => {
    const root = await tree({
      'proc/self/cgroup': '0::/\n',
      'proc/self/mountinfo': '30 25 0:26 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw\n',
      'sys/fs/cgroup/cgroup.controllers': 'memory\n',
      'sys/fs/cgroup/memory.current': '5\n',
      'sys/fs/cgroup/memory.max': '10\n',
      'sys/fs/cgroup/memory.stat': 'anon 5\nfile 0\n',
    });
    const loc = await locateMemoryCgroup('self', root);
    expect(loc!.dir).toBe(path.join(root, 'sys/fs/cgroup'));
    expect((await readCgroupMemoryAt(loc!)).limit).toBe(10);
  });

  it('maps a path under a bind-mounted v1 hierarchy root (docker without a cgroup namespace)', async () => {
    const root = await tree({
      'proc/self/cgroup': '4:memory:/docker/abc\n',
      'proc/self/mountinfo':
        '35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n',
      'sys/fs/cgroup/memory/memory.usage_in_bytes': '300\n',
      'sys/fs/cgroup/memory/memory.limit_in_bytes': '1000\n',
      'sys/fs/cgroup/memory/memory.stat':
        'cache 100\nrss 200\nhierarchical_memory_limit 1000\ntotal_cache 100\ntotal_rss 200\ntotal_inactive_file 50\n',
    });
    const m = await readCgroupMemory('self', root);
    expect(m).toEqual({
      version: 1,
      path: '/docker/abc',
      limit: 1000,
      usage: 300,
      workingSet: 250,
      anon: 200,
      file: 100,
    });
  });

  it('gives undefined in the v2 root cgroup, which has no memory.current', async () => {
    const root = await tree({
      'proc/self/cgroup': '0::/\n',
      'proc/self/mountinfo': '26 24 0:24 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n',
      'sys/fs/cgroup/cgroup.controllers': 'memory\n',
      'sys/fs/cgroup/memory.stat': 'anon 5\n',
    });
    expect(await readCgroupMemory('self', root)).toBeUndefined();
  });

  it('gives undefined when no memory controller is mounted', async () => {
    const root = await tree({
      'proc/self/cgroup': '0::/x\n',
      'proc/self/mountinfo': '26 24 0:24 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n',
      'sys/fs/cgroup/cgroup.controllers': 'cpu pids\n',
    });
    expect(await readCgroupMemory('self', root)).toBeUndefined();
  });

  it('throws a typed error when a located cgroup is removed', async () => {
    const root = await tree({
      'proc/self/cgroup': '0::/gone\n',
      'sys/fs/cgroup/cgroup.controllers': 'memory\n',
      'sys/fs/cgroup/gone/memory.current': '1\n',
      'sys/fs/cgroup/gone/memory.max': 'max\n',
      'sys/fs/cgroup/gone/memory.stat': 'anon 1\n',
    });
    const loc = await locateMemoryCgroup('self', root);
    await rm(path.join(root, 'sys/fs/cgroup/gone'), { recursive: true });
    await expect(readCgroupMemoryAt(loc!)).rejects.toMatchObject({ code: 'MONITOR_PARSE' });
  });
});

describe('this machine', () => {
  it('reads the cgroup of this process', async () => {
    const own = parseProcCgroup(readFileSync('/proc/self/cgroup', 'utf8'));
    const v1 = existsSync('/sys/fs/cgroup/memory/memory.usage_in_bytes');
    const m = await readCgroupMemory('self');
    expect(m).toBeDefined();
    expect(m!.version).toBe(v1 ? 1 : 2);
    const expectedPath = v1
      ? own.find((l) => l.controllers.includes('memory'))!.path
      : own.find((l) => l.id === 0)!.path;
    expect(m!.path).toBe(expectedPath);
    expect(m!.usage).toBeGreaterThan(0);
    expect(m!.workingSet).toBeLessThanOrEqual(m!.usage);
    if (m!.limit !== undefined) expect(m!.limit).toBeGreaterThan(0);
    if (m!.peak !== undefined) expect(m!.peak).toBeGreaterThan(0);
  });
});
