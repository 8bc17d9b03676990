import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { locateMemoryCgroup } from './cgroup.js';
import { readLinuxSample, swapRates, type LinuxMemorySample } from './sample.js';

const FIX = fileURLToPath(new URL('../../test/fixtures/monitor/', import.meta.url));
const KiB = 1024;

describe('readLinuxSample', () => {
  it('reads a fixture tree: memory, swap counters, PSI, cgroup and live processes only', async () => {
    const root = `${FIX}linux-v2`;
    const cgroup = await locateMemoryCgroup('self', root);
    const s = await readLinuxSample({ root, cgroup });
    expect(s.total).toBe(32702356 * KiB);
    expect(s.available).toBe(9128476 * KiB);
    expect(s.swapUsed).toBe((8388604 - 6120444) * KiB);
    expect(s.swapInPages).toBe(412380);
    expect(s.swapOutPages).toBe(981247);
    expect(s.pressure?.full?.avg10).toBe(1.13);
    expect(s.cgroup?.limit).toBe(8 * 1024 ** 3);
    expect(s.processes).toEqual([]);

    const v1 = await readLinuxSample({ root: `${FIX}linux-v1`, pids: [4242, 99999] });
    expect(v1.processes.map((p) => [p.pid, p.rss])).toEqual([[4242, 205056 * KiB]]);
    expect(v1.cgroup).toBeUndefined();
  });

  it('reads this machine', async () => {
    const cgroup = await locateMemoryCgroup('self');
    const s = await readLinuxSample({ cgroup, pids: [process.pid] });
    expect(s.available).toBeGreaterThan(0);
    expect(s.processes[0]!.pid).toBe(process.pid);
    expect(s.processes[0]!.rss).toBeGreaterThan(0);
    expect(s.cgroup?.usage).toBeGreaterThan(0);
  });
});

describe('swapRates', () => {
  const base: LinuxMemorySample = {
    at: 0,
    mono: 1000,
    total: 1,
    available: 1,
    free: 1,
    swapTotal: 0,
    swapUsed: 0,
    processes: [],
  };

  it('turns page counters into bytes per second', () => {
    const a = { ...base, swapInPages: 100, swapOutPages: 1000 };
    const b = { ...base, mono: 1500, swapInPages: 110, swapOutPages: 1250 };
    expect(swapRates(a, b)).toEqual({ inPerSec: (10 * 4096) / 0.5, outPerSec: (250 * 4096) / 0.5 });
  });

  it('reads 0 without counters, without elapsed time, or across a counter reset', () => {
    expect(swapRates(base, { ...base, mono: 2000 })).toEqual({ inPerSec: 0, outPerSec: 0 });
    const a = { ...base, swapInPages: 5, swapOutPages: 5 };
    expect(swapRates(a, { ...a })).toEqual({ inPerSec: 0, outPerSec: 0 });
    expect(swapRates(a, { ...a, mono: 2000, swapInPages: 1, swapOutPages: 0 })).toEqual({
      inPerSec: 0,
      outPerSec: 0,
    });
  });
});
