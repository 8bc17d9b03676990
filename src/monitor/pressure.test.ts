import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MONITOR_CONFIG, monitorConfigSchema } from '../config/monitor.js';
import {
  classify,
  defaultThresholds,
  excessBytes,
  levelsOver,
  stepLevel,
  INITIAL_LEVEL,
  thresholdsFromConfig,
  type PresetLike,
  type PressureInputs,
  type PressureThresholds,
} from './pressure.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const FIX = fileURLToPath(new URL('../../test/fixtures/monitor/sequences/', import.meta.url));

/** The 24 GB and 4 GB classes of planner/presets.ts, as the shape the monitor takes. */
const P24: PresetLike = {
  nominalBytes: 24 * GiB,
  reserveBytes: 4 * GiB,
  lowMemory: false,
  level: 'basic',
};
const P4: PresetLike = {
  nominalBytes: 4 * GiB,
  reserveBytes: 1.5 * GiB,
  lowMemory: true,
  level: 'maximum',
};

/** A recorded sequence: one row per sample (see test/fixtures/monitor/sequences/README.md). */
interface Recorded {
  capacity: number;
  thresholds: { availablePercent: { medium: number; high: number; critical: number } };
  samples: Array<{
    available: number;
    psiSome10?: number;
    psiFull10?: number;
    swapBytesPerSec?: number;
  }>;
  expected: string[];
}

function load(name: string): { inputs: PressureInputs[]; t: PressureThresholds; rec: Recorded } {
  const rec = JSON.parse(readFileSync(`${FIX}${name}`, 'utf8')) as Recorded;
  const t = thresholdsFromConfig(defaultThresholds(P24), rec.thresholds);
  const inputs = rec.samples.map((s) => ({
    available: s.available,
    capacity: rec.capacity,
    psiSome10: s.psiSome10,
    psiFull10: s.psiFull10,
    swapBytesPerSec: s.swapBytesPerSec ?? 0,
  }));
  return { inputs, t, rec };
}

const at = (fraction: number, extra: Partial<PressureInputs> = {}): PressureInputs => ({
  available: fraction * GiB,
  capacity: GiB,
  swapBytesPerSec: 0,
  ...extra,
});

describe('defaultThresholds', () => {
  it('derives the levels from the preset reserve: medium at reserve/size, high at half, critical at a quarter', () => {
    const t = defaultThresholds(P24);
    expect(t.available.medium).toBeCloseTo(4 / 24);
    expect(t.available.high).toBeCloseTo(4 / 48);
    expect(t.available.critical).toBeCloseTo(4 / 96);
  });

  it('low-memory mode and higher optimisation levels react earlier', () => {
    const basic = defaultThresholds(P24);
    const low = defaultThresholds(P24, { lowMemory: true });
    const aggressive = defaultThresholds(P24, { optimisation: 'aggressive' });
    const max = defaultThresholds(P24, { optimisation: 'maximum' });
    expect(low.available.medium).toBeCloseTo(basic.available.medium * 1.5);
    expect(aggressive.available.medium).toBeCloseTo(basic.available.medium * 1.25);
    expect(max.available.high).toBeGreaterThan(aggressive.available.high);
    expect(max.psiSome.medium).toBeLessThan(basic.psiSome.medium);
    // The 4 GB class is low-memory and maximum by preset: the earliest of all, capped at 50%.
    expect(defaultThresholds(P4).available.medium).toBe(0.5);
    // 20% available is low under basic but medium under maximum.
    expect(classify(at(0.15), basic).level).toBe('medium');
    expect(classify(at(0.2), basic).level).toBe('low');
    expect(classify(at(0.2), max).level).toBe('medium');
  });

  it('explicit config thresholds win over the preset', () => {
    const cfg = monitorConfigSchema.parse({
      thresholds: {
        availablePercent: { high: 30 },
        psiFull: { critical: 5 },
        swapMiBPerSec: { medium: 1 },
      },
    });
    const t = thresholdsFromConfig(defaultThresholds(P24), cfg.thresholds);
    expect(t.available.high).toBe(0.3);
    expect(t.available.medium).toBeCloseTo(4 / 24);
    expect(t.psiFull.critical).toBe(5);
    expect(t.swap.medium).toBe(MiB);
    expect(thresholdsFromConfig(defaultThresholds(P24), DEFAULT_MONITOR_CONFIG.thresholds)).toEqual(
      defaultThresholds(P24),
    );
  });
});

describe('classify', () => {
  const t = defaultThresholds(P24);
  it('takes the worst signal and says why', () => {
    expect(classify(at(0.5), t)).toEqual({ level: 'low', reasons: [] });
    const c = classify(at(0.5, { psiFull10: 12 }), t);
    expect(c.level).toBe('high');
    expect(c.reasons).toEqual(['PSI full avg10 12% ≥ high 10.0%']);
    const d = classify(at(0.03, { psiSome10: 11 }), t);
    expect(d.level).toBe('critical');
    expect(d.reasons[0]).toMatch(/^available 3\.0% < critical 4\.2%$/);
    expect(d.reasons[1]).toMatch(/PSI some avg10 11% ≥ medium/);
  });

  it('never makes critical from swapping alone', () => {
    expect(classify(at(0.9, { swapBytesPerSec: 10 * GiB }), t).level).toBe('high');
    expect(classify(at(0.9, { swapBytesPerSec: 5 * MiB }), t).level).toBe('medium');
  });

  it('reads a zero capacity as no information (low), not as a division by zero', () => {
    expect(classify({ available: 0, capacity: 0, swapBytesPerSec: 0 }, t).level).toBe('low');
  });
});

describe('stepLevel (hysteresis)', () => {
  const t = defaultThresholds(P24); // medium < 16.7%, high < 8.3%, critical < 4.2%

  it('goes up at once, and down only after downSamples calm samples past the margin', () => {
    let s = stepLevel(INITIAL_LEVEL, at(0.07), t);
    expect(s).toMatchObject({ changed: true, state: { level: 'high' } });
    // 9% is above high's line (8.3%) but inside its margin (8.3 × 1.25 = 10.4%): stays high.
    for (let i = 0; i < 10; i++) s = stepLevel(s.state, at(0.09), t);
    expect(s.state.level).toBe('high');
    // 12% is clear of high but not of medium's margin: two calm samples are not enough…
    s = stepLevel(s.state, at(0.12), t);
    s = stepLevel(s.state, at(0.12), t);
    expect(s.state).toMatchObject({ level: 'high', calm: 2 });
    // …a relapse resets the count…
    s = stepLevel(s.state, at(0.1), t);
    expect(s.state).toMatchObject({ level: 'high', calm: 0 });
    s = stepLevel(s.state, at(0.12), t);
    s = stepLevel(s.state, at(0.12), t);
    s = stepLevel(s.state, at(0.12), t);
    // …three in a row step down to the level the relaxed thresholds give (medium, not low).
    expect(s).toMatchObject({ changed: true, state: { level: 'medium', calm: 0 } });
  });

  it('steps straight from critical to low when memory comes back at once', () => {
    const levels = levelsOver([at(0.02), at(0.6), at(0.6), at(0.6)], t);
    expect(levels).toEqual(['critical', 'critical', 'critical', 'low']);
  });

  it('does not flap on a signal oscillating around a threshold', () => {
    const seq = Array.from({ length: 40 }, (_, i) => at(i % 2 === 0 ? 0.16 : 0.175));
    const levels = levelsOver(seq, t);
    expect(new Set(levels)).toEqual(new Set(['medium']));
  });
});

describe('recorded sequences', () => {
  for (const name of ['cgroup-fill.json', 'psi-spike.json', 'oscillation.json']) {
    it(`${name}: the level after each sample`, () => {
      const { inputs, t, rec } = load(name);
      expect(levelsOver(inputs, t)).toEqual(rec.expected);
    });
  }
});

describe('excessBytes', () => {
  it('is what must be freed to clear medium with the margin', () => {
    const t = thresholdsFromConfig(defaultThresholds(P24), {
      availablePercent: { medium: 40, high: 25, critical: 10 },
      hysteresisPercent: 25,
    });
    expect(excessBytes(at(0.2), t)).toBe(Math.ceil(0.3 * GiB));
    expect(excessBytes(at(0.6), t)).toBe(0);
  });
});
