import { UsageError } from './exit.js';

/** Parses a non-negative integer flag, or throws a UsageError naming it. */
export function intFlag(values: Record<string, unknown>, name: string): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^\d+$/.test(v))
    throw new UsageError(`--${name} must be a whole number, got "${String(v)}"`);
  return Number(v);
}
