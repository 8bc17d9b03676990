import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  darwinAvailable,
  darwinMemoryFrom,
  parseMemoryPressure,
  parseMemsize,
  parseSwapUsage,
  parseSysctl,
  parseVmStat,
} from './darwin.js';
import { MonitorError } from './io.js';

const FIX = fileURLToPath(new URL('../../test/fixtures/monitor/darwin/', import.meta.url));
const fixture = (p: string): string => readFileSync(`${FIX}${p}`, 'utf8');
const PAGE = 16384;
const MiB = 1024 ** 2;

describe('vm_stat', () => {
  it('reads page counts and the page size of an Apple Silicon Mac', () => {
    const vm = parseVmStat(fixture('vm_stat.txt'));
    expect(vm).toEqual({
      pageSize: PAGE,
      free: 13248,
      active: 330012,
      inactive: 255221,
      speculative: 1560,
      throttled: 0,
      wired: 121838,
      purgeable: 5479,
      compressor: 311089,
      storedInCompressor: 712383,
      fileBacked: 182006,
      anonymous: 404787,
      pageins: 14434188,
      pageouts: 129543,
      swapins: 391201,
      swapouts: 498731,
    });
    // The queues account for (almost) all of 16 GiB; file-backed + anonymous = the pageable queues.
    const queues =
      vm.free + vm.active + vm.inactive + vm.speculative + vm.throttled + vm.wired + vm.compressor;
    expect(queues * PAGE).toBeLessThanOrEqual(16 * 1024 ** 3);
    expect(queues * PAGE).toBeGreaterThan(15.5 * 1024 ** 3);
    expect(vm.fileBacked + vm.anonymous).toBe(vm.active + vm.inactive + vm.speculative);
  });

  it('computes available memory as free + speculative + inactive pages', () => {
    const vm = parseVmStat(fixture('vm_stat.txt'));
    expect(darwinAvailable(vm)).toBe((13248 + 1560 + 255221) * PAGE);
  });

  it('reads 4 KiB pages and thousands separators', () => {
    const vm = parseVmStat(
      'Mach Virtual Memory Statistics: (page size of 4096 bytes)\nPages free:                             1,234.\nPages active:        10.\nPages inactive:       20.\nPages wired down:     30.\n',
    );
    expect(vm.pageSize).toBe(4096);
    expect(vm.free).toBe(1234);
    expect(vm.speculative).toBe(0);
  });

  it('rejects output without the header or the main queues', () => {
    expect(() => parseVmStat('Pages free: 10.\n')).toThrow(MonitorError);
    expect(() =>
      parseVmStat('Mach Virtual Memory Statistics: (page size of 16384 bytes)\nPages free: 10.\n'),
    ).toThrow(/active/);
  });
});

describe('sysctl', () => {
  it('reads hw.memsize with and without its name', () => {
    expect(parseMemsize(fixture('sysctl-n-hw.memsize.txt'))).toBe(17179869184);
    expect(parseMemsize('hw.memsize: 17179869184')).toBe(17179869184);
    expect(() => parseMemsize('16 GB')).toThrow(MonitorError);
  });

  it('reads vm.swapusage', () => {
    expect(parseSwapUsage(fixture('sysctl-vm.swapusage.txt'))).toEqual({
      total: 2048 * MiB,
      used: Math.round(1126.25 * MiB),
      free: Math.round(921.75 * MiB),
      encrypted: true,
    });
    expect(parseSwapUsage('total = 0.00M  used = 0.00M  free = 0.00M  ')).toEqual({
      total: 0,
      used: 0,
      free: 0,
      encrypted: false,
    });
    expect(parseSwapUsage('total = 3.00G  used = 1.50G  free = 1.50G  (encrypted)').used).toBe(
      1.5 * 1024 ** 3,
    );
    expect(() => parseSwapUsage('vm.swapusage: nothing')).toThrow(MonitorError);
  });

  it('splits multi-name output', () => {
    const s = parseSysctl(fixture('sysctl.txt'));
    expect(s.get('hw.memsize')).toBe('17179869184');
    expect(s.get('kern.memorystatus_level')).toBe('38');
    expect(s.get('vm.swapusage')).toMatch(/^total = 2048.00M/);
  });
});

describe('memory_pressure', () => {
  it('reads the full output', () => {
    expect(parseMemoryPressure(fixture('memory_pressure.txt'))).toEqual({
      total: 17179869184,
      pageSize: PAGE,
      freePercent: 38,
    });
  });

  it('reads -Q output', () => {
    expect(parseMemoryPressure(fixture('memory_pressure-Q.txt'))).toEqual({
      total: 17179869184,
      pageSize: PAGE,
      freePercent: 38,
    });
  });

  it('rejects output without the percentage', () => {
    expect(() =>
      parseMemoryPressure(
        'The system has 17179869184 (1048576 pages with a page size of 16384).\n',
      ),
    ).toThrow(MonitorError);
  });
});

describe('darwinMemoryFrom', () => {
  it('combines vm_stat and sysctl into the snapshot shape', () => {
    const m = darwinMemoryFrom(fixture('vm_stat.txt'), fixture('sysctl.txt'));
    expect(m.total).toBe(17179869184);
    expect(m.available).toBe((13248 + 1560 + 255221) * PAGE);
    expect(m.free).toBe((13248 + 1560) * PAGE);
    expect(m.compressed).toBe(311089 * PAGE);
    expect(m.wired).toBe(121838 * PAGE);
    expect(m.swap.total).toBe(2048 * MiB);
    expect(m.freePercent).toBe(38);
  });

  it('leaves freePercent out when sysctl lacks kern.memorystatus_level, and requires the rest', () => {
    const sys =
      'hw.memsize: 17179869184\nvm.swapusage: total = 0.00M  used = 0.00M  free = 0.00M  \n';
    expect(darwinMemoryFrom(fixture('vm_stat.txt'), sys).freePercent).toBeUndefined();
    expect(() => darwinMemoryFrom(fixture('vm_stat.txt'), 'hw.memsize: 1\n')).toThrow(
      /vm.swapusage/,
    );
    expect(() => darwinMemoryFrom(fixture('vm_stat.txt'), '')).toThrow(/hw.memsize/);
  });
});
