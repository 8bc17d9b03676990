/**
 * Pressure level: low / medium / high / critical, from a sample's figures, with hysteresis.
 *
 * Pure. The level is the worst of four signals:
 *   - memory available, as a fraction of capacity: min(MemAvailable, cgroup limit − working set)
 *     over min(total RAM, cgroup limit). One figure covers a bare host and a container;
 *   - PSI memory `some` and `full` avg10 (the cgroup's own on v2, else the system's);
 *   - swap traffic (in + out, bytes/s): at most `high`: swapping alone never makes `critical`.
 *
 * Going UP is immediate (one sample over a threshold): reacting late is what gets processes
 * OOM-killed. Going DOWN needs every signal clear of the lower level's thresholds by a margin
 * (hysteresis) for `downSamples` consecutive samples, so a level does not flap around a line.
 */
import type { MonitorConfig } from '../config/monitor.js';

export type PressureLevel = 'low' | 'medium' | 'high' | 'critical';
export const LEVELS: readonly PressureLevel[] = ['low', 'medium', 'high', 'critical'];

export function levelRank(l: PressureLevel): number {
  return LEVELS.indexOf(l);
}

/** The figures a level is computed from (see pressureInputs in sampler.ts). */
export interface PressureInputs {
  /** Bytes available for new work (already the smaller of the system's and the cgroup's). */
  available: number;
  /** What `available` is a share of: min(total RAM, cgroup limit). */
  capacity: number;
  psiSome10?: number;
  psiFull10?: number;
  /** Swap-in + swap-out, bytes per second. */
  swapBytesPerSec: number;
}

export interface Triple {
  medium: number;
  high: number;
  critical: number;
}

export interface PressureThresholds {
  /** Available fraction (0–1) BELOW which each level starts. */
  available: Triple;
  /** PSI avg10 (%) AT OR ABOVE which each level starts. */
  psiSome: Triple;
  psiFull: Triple;
  /** Swap bytes/s at or above which medium / high start. */
  swap: { medium: number; high: number };
  /** Recovery margin, a fraction of each threshold (0.25: available must exceed t × 1.25, PSI fall below t × 0.75). */
  hysteresis: number;
  /** Consecutive calm samples before stepping down. */
  downSamples: number;
}

/** The parts of a memory-class preset (planner/presets.ts MemoryPreset) the thresholds derive from. */
export interface PresetLike {
  nominalBytes: number;
  reserveBytes: number;
  lowMemory: boolean;
  level: 'basic' | 'aggressive' | 'maximum';
}

const MiB = 1024 * 1024;

/**
 * Thresholds for a memory class. The preset's reserve, as a share of the class's size, is where
 * `medium` starts (a 24 GB machine keeps 4 GiB: medium under 16.7% available); `high` at half
 * of it, `critical` at a quarter. Low-memory mode (×1.5) and the optimisation level (aggressive
 * ×1.25, maximum ×1.5) make the monitor react EARLIER: both say the user ranks staying inside
 * memory above speed. Their PSI thresholds are divided by the same factor.
 */
export function defaultThresholds(
  preset: PresetLike,
  opts: { lowMemory?: boolean; optimisation?: PresetLike['level'] } = {},
): PressureThresholds {
  const lowMemory = opts.lowMemory ?? preset.lowMemory;
  const level = opts.optimisation ?? preset.level;
  const factor =
    (lowMemory ? 1.5 : 1) * (level === 'maximum' ? 1.5 : level === 'aggressive' ? 1.25 : 1);
  const base = Math.min(0.4, Math.max(0.08, preset.reserveBytes / preset.nominalBytes));
  const medium = Math.min(0.5, base * factor);
  return {
    available: { medium, high: medium / 2, critical: medium / 4 },
    psiSome: { medium: 10 / factor, high: 25 / factor, critical: 50 / factor },
    psiFull: { medium: 2 / factor, high: 10 / factor, critical: 25 / factor },
    swap: { medium: (4 * MiB) / factor, high: (32 * MiB) / factor },
    hysteresis: 0.25,
    downSamples: 3,
  };
}

/** Applies the config's explicit thresholds (percentages, MiB/s) over defaults. */
export function thresholdsFromConfig(
  defaults: PressureThresholds,
  t: MonitorConfig['thresholds'],
): PressureThresholds {
  const pct = (d: Triple, o: Partial<Triple> | undefined, scale: number): Triple => ({
    medium: o?.medium !== undefined ? o.medium / scale : d.medium,
    high: o?.high !== undefined ? o.high / scale : d.high,
    critical: o?.critical !== undefined ? o.critical / scale : d.critical,
  });
  return {
    available: pct(defaults.available, t.availablePercent, 100),
    psiSome: pct(defaults.psiSome, t.psiSome, 1),
    psiFull: pct(defaults.psiFull, t.psiFull, 1),
    swap: {
      medium:
        t.swapMiBPerSec?.medium !== undefined ? t.swapMiBPerSec.medium * MiB : defaults.swap.medium,
      high: t.swapMiBPerSec?.high !== undefined ? t.swapMiBPerSec.high * MiB : defaults.swap.high,
    },
    hysteresis: t.hysteresisPercent !== undefined ? t.hysteresisPercent / 100 : defaults.hysteresis,
    downSamples: t.downSamples ?? defaults.downSamples,
  };
}

export interface Classification {
  level: PressureLevel;
  /** Why, one line per signal that is above `low` ("available 6.1% < high 8.3%"). */
  reasons: string[];
}

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;

/**
 * The level the inputs call for. `margin` relaxes nothing when 0; with the hysteresis margin it
 * answers "which level are we clearly out of" (available must exceed t × (1 + margin), PSI and
 * swap fall below t × (1 − margin)).
 */
export function classify(
  inputs: PressureInputs,
  t: PressureThresholds,
  margin = 0,
): Classification {
  let rank = 0;
  const reasons: string[] = [];
  const bump = (r: number, why: string): void => {
    if (r > 0) reasons.push(why);
    if (r > rank) rank = r;
  };
  const fraction = inputs.capacity > 0 ? Math.max(0, inputs.available) / inputs.capacity : 1;
  const below = (limit: number): boolean => fraction < limit * (1 + margin);
  const availRank = below(t.available.critical)
    ? 3
    : below(t.available.high)
      ? 2
      : below(t.available.medium)
        ? 1
        : 0;
  const availLimit = [0, t.available.medium, t.available.high, t.available.critical][availRank]!;
  bump(availRank, `available ${pct(fraction)} < ${LEVELS[availRank]} ${pct(availLimit)}`);

  const above = (v: number | undefined, limit: number): boolean =>
    v !== undefined && v >= limit * (1 - margin);
  const psi = (v: number | undefined, tr: Triple, name: string): void => {
    const r = above(v, tr.critical) ? 3 : above(v, tr.high) ? 2 : above(v, tr.medium) ? 1 : 0;
    const limit = [0, tr.medium, tr.high, tr.critical][r]!;
    bump(r, `PSI ${name} avg10 ${v ?? 0}% ≥ ${LEVELS[r]} ${limit.toFixed(1)}%`);
  };
  psi(inputs.psiSome10, t.psiSome, 'some');
  psi(inputs.psiFull10, t.psiFull, 'full');

  const s = inputs.swapBytesPerSec;
  const swapRank = above(s, t.swap.high) ? 2 : above(s, t.swap.medium) ? 1 : 0;
  bump(
    swapRank,
    `swap ${(s / MiB).toFixed(1)} MiB/s ≥ ${LEVELS[swapRank]} ${((swapRank === 2 ? t.swap.high : t.swap.medium) / MiB).toFixed(1)} MiB/s`,
  );
  return { level: LEVELS[rank]!, reasons };
}

/** The hysteresis state carried from one sample to the next. */
export interface LevelState {
  level: PressureLevel;
  /** Consecutive samples whose relaxed level was below `level`. */
  calm: number;
  /** The reasons behind the current level (from the sample that set or last confirmed it). */
  reasons: string[];
}

export const INITIAL_LEVEL: LevelState = { level: 'low', calm: 0, reasons: [] };

/** One step of the level machine. Returns the next state and whether the level changed. */
export function stepLevel(
  state: LevelState,
  inputs: PressureInputs,
  t: PressureThresholds,
): { state: LevelState; changed: boolean } {
  const raw = classify(inputs, t);
  const cur = levelRank(state.level);
  if (levelRank(raw.level) > cur) {
    return { state: { level: raw.level, calm: 0, reasons: raw.reasons }, changed: true };
  }
  const relaxed = classify(inputs, t, t.hysteresis);
  if (levelRank(relaxed.level) < cur) {
    const calm = state.calm + 1;
    if (calm >= t.downSamples) {
      return {
        state: { level: relaxed.level, calm: 0, reasons: relaxed.reasons },
        changed: true,
      };
    }
    return { state: { ...state, calm }, changed: false };
  }
  // Still at this level (or between it and its release line): confirm it, reset the calm count.
  return {
    state: {
      level: state.level,
      calm: 0,
      reasons: raw.level === state.level ? raw.reasons : state.reasons,
    },
    changed: false,
  };
}

/** Runs the machine over a recorded sequence; the level after each sample. */
export function levelsOver(
  seq: readonly PressureInputs[],
  t: PressureThresholds,
  start: LevelState = INITIAL_LEVEL,
): PressureLevel[] {
  let s = start;
  return seq.map((i) => {
    s = stepLevel(s, i, t).state;
    return s.level;
  });
}

/**
 * Bytes to free to get back to the `medium` line with the hysteresis margin: how much idle
 * models a `high` reaction should unload. 0 when already clear of it.
 */
export function excessBytes(inputs: PressureInputs, t: PressureThresholds): number {
  const target = inputs.capacity * t.available.medium * (1 + t.hysteresis);
  return Math.max(0, Math.ceil(target - Math.max(0, inputs.available)));
}
