/**
 * The budgets the ledger is held to: what headroom may use of RAM and of each GPU. Pure; the
 * daemon reads the machine and passes the figures in.
 */

/**
 * Budget = min(RAM × fraction, cgroup limit, configured cap) − reserve, never below zero.
 * Undefined inputs do not limit.
 */
export function computeBudget(input: {
  totalRam: number;
  fraction: number;
  cgroupLimit?: number;
  cap?: number;
  reserve: number;
}): number {
  const limits = [input.totalRam * input.fraction];
  if (input.cgroupLimit !== undefined) limits.push(input.cgroupLimit);
  if (input.cap !== undefined) limits.push(input.cap);
  return Math.max(0, Math.floor(Math.min(...limits) - input.reserve));
}

/**
 * A GPU's budget, shaped like `computeBudget`: min(VRAM × fraction, free VRAM + bytes headroom's
 * runners hold there, configured cap) − reserve, never below zero. Free VRAM is a limit because
 * what other processes (a desktop, another app) hold on the device is not ours to plan with;
 * `held` adds back what our own runners hold, so a refresh while models are loaded does not count
 * them against us. Undefined inputs do not limit.
 */
export function computeGpuBudget(input: {
  total: number;
  free?: number;
  held?: number;
  fraction: number;
  cap?: number;
  reserve: number;
}): number {
  return computeBudget({
    totalRam: input.total,
    fraction: input.fraction,
    ...(input.free !== undefined ? { cgroupLimit: input.free + (input.held ?? 0) } : {}),
    ...(input.cap !== undefined ? { cap: input.cap } : {}),
    reserve: input.reserve,
  });
}
