import { mib } from './ledger.js';

/**
 * A runner whose resident set grows past its plan while its context cannot grow any more is
 * leaking: node-llama-cpp 3.22 loses one sampler (n_vocab × 12 bytes) per generation that overlaps
 * another (engines/embedded/native-garbage.ts), so a busy multi-slot runner grows without bound.
 * Only a new process returns that memory. A ready runner that has served `minRequests` requests
 * and measures more than its plan plus `max(growthBytes, fraction × plan)` is stopped when idle
 * (and drained when busy past twice that); the next request loads it again.
 */
export interface RecycleSettings {
  growthBytes: number;
  fraction: number;
  minRequests: number;
}

/** What the recycle rule reads of a runner instance. */
export interface RecycleCandidate {
  state: string;
  measured?: number;
  predicted: number;
  served: number;
  inFlight: { size: number };
}

/**
 * Why a runner should be recycled now (a sentence for the log), or undefined when it should not:
 * ready, measured, past `minRequests`, and grown past its plan by more than the allowance (twice
 * that while it is busy, since draining it interrupts its clients' flow).
 */
export function recycleReason(
  inst: RecycleCandidate,
  r: RecycleSettings | undefined,
): string | undefined {
  if (!r || inst.state !== 'ready' || inst.measured === undefined) return undefined;
  if (inst.served < r.minRequests) return undefined;
  const allowed = Math.max(r.growthBytes, r.fraction * inst.predicted);
  const growth = inst.measured - inst.predicted;
  const idle = inst.inFlight.size === 0;
  if (growth <= (idle ? allowed : 2 * allowed)) return undefined;
  return `its resident set (${mib(inst.measured, 1)}) grew ${mib(growth, 1)} past its plan (${mib(inst.predicted, 1)}) over ${inst.served} requests; more than the ${mib(allowed, 1)} allowed`;
}
