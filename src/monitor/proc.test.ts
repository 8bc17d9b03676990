import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { MonitorError } from './io.js';
import {
  parseKbTable,
  parseMeminfo,
  parsePressure,
  parseProcStat,
  parseProcStatus,
  parseSmapsRollup,
  parseVmstat,
  readMeminfo,
  readPressure,
  readProcessCpu,
  readProcessMemory,
  readSmapsRollup,
  readVmstat,
} from './proc.js';

const FIX = fileURLToPath(new URL('../../test/fixtures/monitor/', import.meta.url));
const V1 = `${FIX}linux-v1`;
const V2 = `${FIX}linux-v2`;
const fixture = (p: string): string => readFileSync(`${FIX}${p}`, 'utf8');
const KiB = 1024;

function expectMonitorError(fn: () => unknown, code = 'MONITOR_PARSE'): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MonitorError);
    expect((err as MonitorError).code).toBe(code);
    return;
  }
  throw new Error('expected a MonitorError');
}

describe('parseKbTable', () => {
  it('converts kB to bytes, keeps unitless counts and skips text values', () => {
    const t = parseKbTable(
      'Name:\tnode\nVmRSS:\t  100 kB\nHugePages_Total:       3\nState:\tS (sleeping)\n',
    );
    expect(t.get('VmRSS')).toBe(100 * KiB);
    expect(t.get('HugePages_Total')).toBe(3);
    expect(t.has('Name')).toBe(false);
    expect(t.has('State')).toBe(false);
  });
});

describe('parseMeminfo', () => {
  it('reads the captured meminfo in bytes', () => {
    const m = parseMeminfo(fixture('linux-v1/proc/meminfo'));
    expect(m.total).toBe(24684092 * KiB);
    expect(m.free).toBe(23844916 * KiB);
    expect(m.available).toBe(24270712 * KiB);
    expect(m.availableEstimated).toBe(false);
    expect(m.cached).toBe(576404 * KiB);
    expect(m.buffers).toBe(3932 * KiB);
    expect(m.swapTotal).toBe(0);
    expect(m.swapFree).toBe(0);
    expect(m.shmem).toBe(8856 * KiB);
    expect(m.inactiveFile).toBe(342416 * KiB);
  });

  it('reads swap from a host that has it', () => {
    const m = parseMeminfo(fixture('linux-v2/proc/meminfo'));
    expect(m.total).toBe(32702356 * KiB);
    expect(m.available).toBe(9128476 * KiB);
    expect(m.swapTotal).toBe(8388604 * KiB);
    expect(m.swapFree).toBe(6120444 * KiB);
    expect(m.swapCached).toBe(91236 * KiB);
    expect(m.committedAs).toBe(41520912 * KiB);
  });

  it('estimates available memory on kernels without MemAvailable', () => {
    const m = parseMeminfo(
      'MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 300 kB\nShmem: 50 kB\nSReclaimable: 40 kB\n',
    );
    expect(m.availableEstimated).toBe(true);
    expect(m.available).toBe((100 + 10 + 300 + 40 - 50) * KiB);
  });

  it('rejects text that is not meminfo', () => {
    expectMonitorError(() => parseMeminfo('hello world\n'));
    expectMonitorError(() => parseMeminfo(''));
  });

  it('reads through a root prefix', async () => {
    expect((await readMeminfo(V2)).total).toBe(32702356 * KiB);
    await expect(readMeminfo(`${FIX}nowhere`)).rejects.toBeInstanceOf(MonitorError);
  });
});

describe('parseProcStatus', () => {
  it('reads RSS, its split and the peak of a captured process', () => {
    const s = parseProcStatus(fixture('linux-v1/proc/4242/status'));
    expect(s.name).toBe('node');
    expect(s.state).toBe('S');
    expect(s.rss).toBe(205056 * KiB);
    expect(s.rssAnon).toBe(169208 * KiB);
    expect(s.rssFile).toBe(35848 * KiB);
    expect(s.rssShmem).toBe(0);
    expect(s.rssAnon + s.rssFile + s.rssShmem).toBe(s.rss);
    expect(s.peak).toBe(237448 * KiB);
    expect(s.peak).toBeGreaterThan(s.rss);
    expect(s.vmSize).toBe(1154120 * KiB);
    expect(s.vmPeak).toBe(1188804 * KiB);
    expect(s.swap).toBe(0);
    expect(s.threads).toBe(7);
  });

  it('gives zeros for a zombie, which has no Vm lines', () => {
    const s = parseProcStatus(
      'Name:\tnode\nUmask:\t0022\nState:\tZ (zombie)\nTgid:\t77\nPid:\t77\nThreads:\t1\n',
    );
    expect(s.state).toBe('Z');
    expect(s.rss).toBe(0);
    expect(s.peak).toBe(0);
  });

  it('takes rssAnon = rss on kernels before 4.5 (no RssAnon line)', () => {
    const s = parseProcStatus('Name:\tx\nState:\tS (sleeping)\nVmHWM:\t 300 kB\nVmRSS:\t 200 kB\n');
    expect(s.rssAnon).toBe(200 * KiB);
    expect(s.rssFile).toBe(0);
  });

  it('rejects text that is not a status file', () => {
    expectMonitorError(() => parseProcStatus(fixture('linux-v1/proc/meminfo')));
  });
});

describe('readProcessMemory', () => {
  it('reads a process of a fixture tree, and undefined for a pid not there', async () => {
    expect(await readProcessMemory(4242, V1)).toEqual({
      rss: 205056 * KiB,
      rssAnon: 169208 * KiB,
      rssFile: 35848 * KiB,
      rssShmem: 0,
      peak: 237448 * KiB,
      swap: 0,
    });
    expect(await readProcessMemory(99999, V1)).toBeUndefined();
  });

  it('reads this process', async () => {
    const m = await readProcessMemory(process.pid);
    expect(m).toBeDefined();
    expect(m!.rss).toBeGreaterThan(0);
    expect(m!.rssAnon).toBeGreaterThan(0);
    expect(m!.peak).toBeGreaterThanOrEqual(m!.rss);
    expect((await readProcessMemory('self'))!.rss).toBeGreaterThan(0);
  });

  it('gives undefined for a process that has exited', async () => {
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    const pid = child.pid!;
    await once(child, 'exit');
    // Node.js reaped it on 'exit': /proc/<pid> is gone (ENOENT).
    expect(await readProcessMemory(pid)).toBeUndefined();
    expect(await readProcessCpu(pid)).toBeUndefined();
    expect(await readSmapsRollup(pid)).toBeUndefined();
  });

  it('rejects what cannot be a pid with a typed error', async () => {
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 60]) {
      await expect(readProcessMemory(bad)).rejects.toMatchObject({ code: 'MONITOR_BAD_ARGUMENT' });
    }
  });
});

describe('smaps_rollup', () => {
  it('parses PSS of a captured process', () => {
    const r = parseSmapsRollup(fixture('linux-v1/proc/4242/smaps_rollup'));
    expect(r.rss).toBe(205056 * KiB);
    expect(r.pss).toBe(186560 * KiB);
    expect(r.pssAnon).toBe(169208 * KiB);
    expect(r.pssFile).toBe(17352 * KiB);
    expect(r.anonymous).toBe(169208 * KiB);
    expect(r.swap).toBe(0);
  });

  it('leaves the PSS split out on kernels without it', () => {
    const r = parseSmapsRollup(
      '00400000-7fff ---p 00000000 00:00 0 [rollup]\nRss: 10 kB\nPss: 8 kB\nAnonymous: 4 kB\n',
    );
    expect(r.pss).toBe(8 * KiB);
    expect(r.pssAnon).toBeUndefined();
  });

  it('rejects a file without Rss/Pss', () => {
    expectMonitorError(() => parseSmapsRollup('Rss: 10 kB\n'));
  });

  it('reads this process', async () => {
    const r = await readSmapsRollup(process.pid);
    expect(r!.pss).toBeGreaterThan(0);
    expect(r!.pss).toBeLessThanOrEqual(r!.rss);
  });
});

describe('parseProcStat', () => {
  it('reads CPU times of a captured process in milliseconds', () => {
    const s = parseProcStat(fixture('linux-v1/proc/4242/stat'));
    expect(s.state).toBe('S');
    expect(s.ppid).toBe(10105);
    expect(s.userMs).toBe(170);
    expect(s.systemMs).toBe(170);
    expect(s.cpuMs).toBe(340);
    expect(s.threads).toBe(7);
    expect(s.startTicks).toBe(1123146);
  });

  it('handles a command name with spaces and parentheses', () => {
    const text =
      '42 (my (odd) name) R 1 42 42 0 -1 4194304 10 0 0 0 250 50 0 0 20 0 3 0 999 1000 10 18446744073709551615\n';
    const s = parseProcStat(text);
    expect(s.state).toBe('R');
    expect(s.ppid).toBe(1);
    expect(s.cpuMs).toBe(3000);
    expect(s.threads).toBe(3);
    expect(s.startTicks).toBe(999);
  });

  it('rejects a truncated or foreign line', () => {
    expectMonitorError(() => parseProcStat('42 (x) R 1 2'));
    expectMonitorError(() => parseProcStat('no parens here'));
  });

  it('reads this process after it used some CPU', async () => {
    const until = performance.now() + 50;
    let x = 0;
    while (performance.now() < until) x += Math.sqrt(x + 1);
    expect(x).toBeGreaterThan(0);
    const cpu = await readProcessCpu(process.pid);
    expect(cpu!.cpuMs).toBeGreaterThan(0);
  });
});

describe('vmstat', () => {
  it('reads swap and OOM counters', () => {
    expect(parseVmstat(fixture('linux-v1/proc/vmstat'))).toEqual({
      pswpin: 0,
      pswpout: 0,
      pgmajfault: 861,
      oomKill: 0,
    });
    expect(parseVmstat(fixture('linux-v2/proc/vmstat'))).toEqual({
      pswpin: 412380,
      pswpout: 981247,
      pgmajfault: 412087,
      oomKill: 3,
    });
  });

  it('rejects a file without the swap counters', () => {
    expectMonitorError(() => parseVmstat('nr_free_pages 10\n'));
    expectMonitorError(() => parseVmstat('pswpin x\npswpout 1\n'));
  });

  it('reads through a root prefix', async () => {
    expect((await readVmstat(V2))!.pswpout).toBe(981247);
    expect(await readVmstat(`${FIX}nowhere`)).toBeUndefined();
  });
});

describe('parsePressure', () => {
  it('reads the captured idle PSI file with some and full', () => {
    const p = parsePressure(fixture('linux-v1/proc/pressure/memory'));
    expect(p.some).toEqual({ avg10: 0, avg60: 0, avg300: 0, total: 0 });
    expect(p.full).toEqual({ avg10: 0, avg60: 0, avg300: 0, total: 0 });
  });

  it('reads a busy file', () => {
    const p = parsePressure(fixture('pressure/memory-busy.txt'));
    expect(p.some).toEqual({ avg10: 12.47, avg60: 6.02, avg300: 1.88, total: 48211946 });
    expect(p.full).toEqual({ avg10: 8.91, avg60: 4.15, avg300: 1.2, total: 31046512 });
  });

  it('reads a file without a full line', () => {
    const p = parsePressure(fixture('pressure/cpu-some-only.txt'));
    expect(p.some.avg10).toBe(0.52);
    expect(p.full).toBeUndefined();
    expect('full' in p).toBe(false);
  });

  it('rejects other text', () => {
    expectMonitorError(() => parsePressure(''));
    expectMonitorError(() => parsePressure('full avg10=1.00 avg60=0.00 avg300=0.00 total=5\n'));
    expectMonitorError(() => parsePressure('some avg10=x avg60=0.00 avg300=0.00 total=0\n'));
  });

  it('reads through a root prefix; undefined where the kernel has no PSI', async () => {
    expect((await readPressure(V2))!.some.avg10).toBe(2.04);
    expect(await readPressure(`${FIX}nowhere`)).toBeUndefined();
  });
});
