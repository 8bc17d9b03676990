import type { LedgerView } from './core-types.js';

/**
 * The ledger, one per device: RAM, and each GPU by index. What each runner instance is charged
 * there (its plan while loading, then the measured figure), summed against that device's budget.
 * Stopping instances stay charged until they exit: their memory is not free before.
 */

/** A device: RAM, or a GPU by index. */
export type Device = 'ram' | number;

/** What the ledger reads of an instance. */
export interface Charged {
  state: string;
  /** Bytes charged on RAM. */
  charge: number;
  /** Bytes charged on each GPU, by index (missing: none). */
  gpuCharge: readonly number[];
}

/** Bytes an instance is charged on a device. */
export function chargeOn(i: Charged, device: Device): number {
  return device === 'ram' ? i.charge : (i.gpuCharge[device] ?? 0);
}

/** Bytes charged on a device, over every instance. */
export function deviceTotal(instances: Iterable<Charged>, device: Device): number {
  let t = 0;
  for (const i of instances) t += chargeOn(i, device);
  return t;
}

/** A device's ledger: reserved by loads in progress, held by the rest, and free of `budget`. */
export function deviceLedger(
  instances: Iterable<Charged>,
  device: Device,
  budget: number,
): LedgerView {
  let reserved = 0;
  let measured = 0;
  for (const i of instances) {
    if (i.state === 'loading') reserved += chargeOn(i, device);
    else measured += chargeOn(i, device);
  }
  return { budget, reserved, measured, free: budget - reserved - measured };
}

/** Non-negative finite byte counts (NaN and negatives become 0; Infinity stays: no limit). */
export function cleanGpuBytes(bytes: readonly number[]): number[] {
  return bytes.map((b) => (b > 0 ? b : 0));
}

export function zeros(n: number): number[] {
  return new Array<number>(n).fill(0);
}

/** Adds per-GPU bytes into a per-GPU sum (GPUs past the sum's end are left out). */
export function addGpus(into: number[], bytes: readonly number[]): void {
  for (let g = 0; g < into.length; g++) into[g] = into[g]! + (bytes[g] ?? 0);
}

/** Bytes as MiB for messages, rounded to `digits` decimals. */
export function mib(bytes: number, digits = 0): string {
  const scale = 10 ** digits;
  return `${(Math.round((bytes / (1024 * 1024)) * scale) / scale).toFixed(digits)} MiB`;
}
