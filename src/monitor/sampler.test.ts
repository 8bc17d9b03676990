import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { defaultThresholds, thresholdsFromConfig } from './pressure.js';
import type { LevelChange, MonitorSample } from './feed.js';
import { Sampler } from './sampler.js';
import type { Alert } from './trends.js';

const FIX = fileURLToPath(new URL('../../test/fixtures/monitor/', import.meta.url));
const GiB = 1024 ** 3;
const P24 = {
  nominalBytes: 24 * GiB,
  reserveBytes: 4 * GiB,
  lowMemory: false,
  level: 'basic' as const,
};

const owned: Sampler[] = [];
afterEach(async () => {
  for (const s of owned.splice(0)) await s.dispose();
});
async function sampler(opts: Parameters<typeof Sampler.create>[0]): Promise<Sampler> {
  const s = await Sampler.create(opts);
  owned.push(s);
  return s;
}

describe('Sampler on this machine', () => {
  it('samples memory, the daemon and a watched runner process; static facts are read once', async () => {
    // A stand-in runner: a real process holding ~64 MiB of anonymous memory.
    const child = spawn(
      process.execPath,
      [
        '-e',
        'globalThis.b = Buffer.alloc(64 * 1024 * 1024, 1); console.log("ready"); setInterval(() => {}, 1000)',
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    try {
      // Its memory is touched once it says so (a fixed wait failed on a loaded machine).
      await once(child.stdout!, 'data');
      let idle = true;
      const s = await sampler({
        start: false,
        processes: () => [{ pid: child.pid!, name: 'chat', idle }],
      });
      expect(s.facts.platform).toBe('linux');
      expect(s.facts.cgroup?.version).toBeDefined();
      const x = await s.sampleNow();
      expect(x.memory.total).toBeGreaterThan(0);
      expect(x.memory.available).toBeLessThanOrEqual(x.memory.total);
      expect(x.pressure.capacity).toBeGreaterThan(0);
      const daemon = x.processes.find((p) => p.role === 'daemon')!;
      expect(daemon.pid).toBe(process.pid);
      expect(daemon.rss).toBeGreaterThan(10 * 1024 * 1024);
      const runner = x.processes.find((p) => p.role === 'runner')!;
      expect(runner).toMatchObject({ name: 'chat', pid: child.pid });
      expect(runner.rssAnon).toBeGreaterThan(60 * 1024 * 1024);
      expect(runner.peak).toBeGreaterThanOrEqual(runner.rss);
      expect(x.seq).toBe(2); // create() took the first
      idle = false;
      // A gone runner is left out, not an error.
      child.kill('SIGKILL');
      await once(child, 'exit');
      const y = await s.sampleNow();
      expect(y.processes.map((p) => p.role)).toEqual(['daemon']);
      expect(s.history().map((h) => h.seq)).toEqual([1, 2, 3]);
      expect(s.stats()).toMatchObject({ samples: 3, failures: 0 });
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('samples on its timer, bounded by historySize, and stops on dispose', async () => {
    // The sampler's timer runs on a fake clock: each interval is one sample, and after dispose
    // no amount of time brings another (the readings themselves are real).
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const s = await sampler({ intervalMs: 20, historySize: 4 });
      const seen: number[] = [];
      s.on('sample', (x) => seen.push(x.seq));
      for (let i = 0; i < 6; i++) await vi.advanceTimersByTimeAsync(20);
      expect(seen).toEqual([2, 3, 4, 5, 6, 7]);
      expect(s.history().map((h) => h.seq)).toEqual([4, 5, 6, 7]);
      await s.dispose();
      await s.dispose();
      await vi.advanceTimersByTimeAsync(1000);
      expect(seen).toHaveLength(6);
    } finally {
      vi.useRealTimers();
    }
  });

  it('emits a level change and a pressure alert when the thresholds say so, with their reasons', async () => {
    // Thresholds no machine can satisfy: 100% available needed to be low, 99.9% for critical.
    const t = thresholdsFromConfig(defaultThresholds(P24), {
      availablePercent: { medium: 100, high: 100, critical: 100 },
    });
    const samples: MonitorSample[] = [];
    const changes: LevelChange[] = [];
    const alerts: Alert[] = [];
    const s = await sampler({ start: false, thresholds: t });
    // create() took the first sample: the change already happened.
    expect(s.level()).toBe('critical');
    s.on('sample', (x) => samples.push(x));
    s.on('level-change', (c) => changes.push(c));
    s.on('alert', (a) => alerts.push(a));
    expect(s.alerts().active.map((a) => [a.kind, a.severity])).toContainEqual([
      'pressure',
      'critical',
    ]);
    const x = await s.sampleNow();
    expect(x.pressure.level).toBe('critical');
    expect(x.pressure.reasons[0]).toMatch(/^available .* < critical 100\.0%$/);
    expect(x.pressure.excessBytes).toBeGreaterThan(0);
    // Confirmed, not re-announced.
    expect(changes).toEqual([]);
    expect(alerts).toEqual([]);
    expect(samples).toEqual([x]);
  });
});

describe('Sampler on a fixture tree', () => {
  it('uses the cgroup limit as capacity and the cgroup PSI (v2)', async () => {
    const s = await sampler({ start: false, root: `${FIX}linux-v2`, platform: 'linux' });
    const x = s.latest()!;
    expect(x.cgroup).toMatchObject({ version: 2, limit: 8 * GiB, oomKills: 1 });
    expect(x.pressure.capacity).toBe(8 * GiB);
    expect(x.pressure.available).toBe(Math.min(x.memory.available, 8 * GiB - x.cgroup!.workingSet));
    expect(x.psi?.source).toBe('cgroup');
    expect(x.thermal).toEqual({ zones: [], throttled: false, reasons: [] });
  });

  it('reads thermal throttling and sysfs GPU memory into the sample and raises a thermal alert', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'headroom-sampler-'));
    try {
      await cp(`${FIX}linux-v2`, root, { recursive: true });
      await cp(`${FIX}thermal`, root, { recursive: true });
      const s = await sampler({ start: false, root, platform: 'linux' });
      const x = s.latest()!;
      expect(x.thermal.throttled).toBe(true);
      expect(x.thermal.maxCelsius).toBe(97);
      expect(x.gpus).toEqual([
        { index: 0, name: 'AMD Radeon RX 7900 XTX', total: 17163091968, used: 4294967296 },
      ]);
      expect(s.alerts().active.find((a) => a.kind === 'thermal')?.message).toMatch(
        /x86_pkg_temp 97°C ≥ trip 95°C/,
      );
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('fails clearly where there is no /proc to read', async () => {
    await expect(
      Sampler.create({ start: false, root: `${FIX}thermal`, platform: 'linux' }),
    ).rejects.toThrow(/proc\/meminfo: missing/);
  });
});
