/**
 * Presets by memory class: what a machine of that size should give models by default. A machine is
 * put in the largest class whose nominal size it reaches (a "16 GB" laptop reports ~15.5 GiB, so
 * the classes are matched at 90% of their nominal GiB). Pure data and lookups.
 */
import type { KvCacheType } from './footprint.js';
import type { OptimisationLevel } from './fit.js';

export type MemoryClass = '4GB' | '8GB' | '16GB' | '24GB' | '32GB' | '64GB+';

export interface MemoryPreset {
  memoryClass: MemoryClass;
  /** Nominal size of the class in bytes (GiB-based). */
  nominalBytes: number;
  /** Share of total RAM the daemon budgets for models by default. */
  budgetFraction: number;
  /** Bytes always left to the OS and other programs; the budget never exceeds total − reserve. */
  reserveBytes: number;
  /** Context used when a request does not say. */
  defaultContext: number;
  /** Optimisation level of the fit search by default. */
  level: OptimisationLevel;
  /** KV cache types the fit search may choose, best first. */
  kvTypes: KvCacheType[];
  /** Parallel slots per model by default. */
  parallel: number;
  /** Low-memory mode (one slot, batch 128). */
  lowMemory: boolean;
}

const GiB = 1024 ** 3;

export const MEMORY_PRESETS: readonly MemoryPreset[] = [
  {
    memoryClass: '4GB',
    nominalBytes: 4 * GiB,
    budgetFraction: 0.5,
    reserveBytes: 1.5 * GiB,
    defaultContext: 2048,
    level: 'maximum',
    kvTypes: ['f16', 'q8_0', 'q4_0'],
    parallel: 1,
    lowMemory: true,
  },
  {
    memoryClass: '8GB',
    nominalBytes: 8 * GiB,
    budgetFraction: 0.6,
    reserveBytes: 2 * GiB,
    defaultContext: 4096,
    level: 'aggressive',
    kvTypes: ['f16', 'q8_0'],
    parallel: 1,
    lowMemory: false,
  },
  {
    memoryClass: '16GB',
    nominalBytes: 16 * GiB,
    budgetFraction: 0.7,
    reserveBytes: 3 * GiB,
    defaultContext: 8192,
    level: 'aggressive',
    kvTypes: ['f16', 'q8_0'],
    parallel: 2,
    lowMemory: false,
  },
  {
    memoryClass: '24GB',
    nominalBytes: 24 * GiB,
    budgetFraction: 0.75,
    reserveBytes: 4 * GiB,
    defaultContext: 8192,
    level: 'basic',
    kvTypes: ['f16'],
    parallel: 2,
    lowMemory: false,
  },
  {
    memoryClass: '32GB',
    nominalBytes: 32 * GiB,
    budgetFraction: 0.75,
    reserveBytes: 4 * GiB,
    defaultContext: 16384,
    level: 'basic',
    kvTypes: ['f16'],
    parallel: 4,
    lowMemory: false,
  },
  {
    memoryClass: '64GB+',
    nominalBytes: 64 * GiB,
    budgetFraction: 0.8,
    reserveBytes: 6 * GiB,
    defaultContext: 32768,
    level: 'basic',
    kvTypes: ['f16'],
    parallel: 4,
    lowMemory: false,
  },
];

/** The preset of a machine with `totalRam` bytes (the smallest class below 4 GB). */
export function presetFor(totalRam: number): MemoryPreset {
  let chosen = MEMORY_PRESETS[0]!;
  for (const p of MEMORY_PRESETS) if (totalRam >= p.nominalBytes * 0.9) chosen = p;
  return chosen;
}

/** The default model budget of a machine: totalRam × fraction, never more than totalRam − reserve (≥ 0). */
export function defaultBudget(
  totalRam: number,
  preset: MemoryPreset = presetFor(totalRam),
): number {
  return Math.max(
    0,
    Math.floor(Math.min(totalRam * preset.budgetFraction, totalRam - preset.reserveBytes)),
  );
}
