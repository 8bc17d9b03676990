/**
 * Eviction as pure functions: which idle instances are candidates, what reloading each would
 * cost, and which of them to stop so that enough comes free. The core builds candidates here
 * for every eviction it makes (room for a load, a ledger over budget, memory pressure).
 */

export interface VictimCandidate {
  instance: number;
  charge: number;
  /** Bytes it holds on each GPU, by device index; missing = none. */
  gpus?: readonly number[];
  lastUsedAt: number;
  /** What a reload would cost: the measured load time, else an estimate from the size. */
  reloadCostMs: number;
}

/**
 * Eviction as a pure function: the idle candidates to stop so that `deficitBytes` bytes of RAM,
 * `gpuDeficits[g]` bytes on each GPU and `slots` model slots come free, most evictable first.
 * Score = idle time / (reload cost + 1 s): least recently used first, but a model that takes long
 * to reload is kept over a cheap one that has been idle a little longer. While only GPUs are
 * short, a candidate counts only if it frees bytes on a GPU that is short (evicting a model that
 * holds RAM alone would not help the load); with no GPU deficit this is the RAM-only rule.
 * Returns undefined when all candidates together are not enough.
 */
export function chooseVictims(
  candidates: readonly VictimCandidate[],
  deficitBytes: number,
  slots: number,
  now: number,
  gpuDeficits: readonly number[] = [],
): number[] | undefined {
  const scored = byEvictionOrder(candidates, now);
  const out: number[] = [];
  let freed = 0;
  const gpuFreed = gpuDeficits.map(() => 0);
  const gpuShort = (g: number): boolean => gpuFreed[g]! < gpuDeficits[g]!;
  const done = (): boolean =>
    freed >= deficitBytes && out.length >= slots && gpuDeficits.every((_, g) => !gpuShort(g));
  for (const c of scored) {
    if (done()) break;
    const helps =
      freed < deficitBytes ||
      out.length < slots ||
      gpuDeficits.some((_, g) => gpuShort(g) && (c.gpus?.[g] ?? 0) > 0);
    if (!helps) continue;
    out.push(c.instance);
    freed += c.charge;
    for (let g = 0; g < gpuFreed.length; g++) gpuFreed[g] = gpuFreed[g]! + (c.gpus?.[g] ?? 0);
  }
  return done() ? out : undefined;
}

function score(c: VictimCandidate, now: number): number {
  return Math.max(0, now - c.lastUsedAt) / (Math.max(0, c.reloadCostMs) + 1000);
}

/** Candidates most evictable first (the order `chooseVictims` takes them in). */
export function byEvictionOrder(
  candidates: readonly VictimCandidate[],
  now: number,
): VictimCandidate[] {
  return [...candidates].sort(
    (a, b) =>
      score(b, now) - score(a, now) || a.lastUsedAt - b.lastUsedAt || a.instance - b.instance,
  );
}

/**
 * Whom a pressure reading evicts to free `needBytes`: unpinned candidates in eviction order until
 * the need is covered (every one of them when they are not enough); then, only when `pinnedToo`
 * and bytes are still missing, pinned candidates the same way. Each victim comes with the bytes
 * still missing before it (for its log line); `left` is what is missing after all of them.
 */
export function pressureVictims(
  unpinned: readonly VictimCandidate[],
  pinned: readonly VictimCandidate[],
  needBytes: number,
  now: number,
  pinnedToo: boolean,
): { victims: Array<{ instance: number; pinned: boolean; need: number }>; left: number } {
  const victims: Array<{ instance: number; pinned: boolean; need: number }> = [];
  let need = needBytes;
  const take = (candidates: readonly VictimCandidate[], isPinned: boolean): void => {
    if (need <= 0 || candidates.length === 0) return;
    const ids =
      chooseVictims(candidates, need, 0, now) ??
      byEvictionOrder(candidates, now).map((c) => c.instance);
    for (const id of ids) {
      victims.push({ instance: id, pinned: isPinned, need });
      need -= candidates.find((c) => c.instance === id)!.charge;
    }
  };
  take(unpinned, false);
  if (pinnedToo) take(pinned, true);
  return { victims, left: need };
}

/** Reload cost when no load time was measured: read at 1 GiB/s plus a fixed start. */
const ESTIMATE_BYTES_PER_MS = (1024 * 1024 * 1024) / 1000;
const ESTIMATE_START_MS = 500;

/** What reloading a model would cost: its measured load time, else an estimate from its size. */
export function reloadCostMs(lastLoadMs: number | undefined, predictedBytes: number): number {
  return lastLoadMs ?? ESTIMATE_START_MS + predictedBytes / ESTIMATE_BYTES_PER_MS;
}

/** What the candidate builder reads of an instance. */
export interface EvictableInstance {
  id: number;
  state: string;
  inFlight: { size: number };
  lastUsedAt: number;
  predicted: number;
  gpuCharge: readonly number[];
}

/**
 * The eviction candidates: ready instances with nothing in flight (pinned ones included: each
 * caller filters), each freeing `bytesOf(i)` bytes of RAM and its GPU charges. The one place
 * candidates are built, so every eviction weighs reload cost alike.
 */
export function victimCandidates<I extends EvictableInstance>(
  instances: Iterable<I>,
  bytesOf: (i: I) => number,
  lastLoadMsOf: (i: I) => number | undefined,
): VictimCandidate[] {
  const out: VictimCandidate[] = [];
  for (const i of instances) {
    if (i.state !== 'ready' || i.inFlight.size > 0) continue;
    out.push({
      instance: i.id,
      charge: bytesOf(i),
      lastUsedAt: i.lastUsedAt,
      reloadCostMs: reloadCostMs(lastLoadMsOf(i), i.predicted),
      ...(i.gpuCharge.length > 0 ? { gpus: i.gpuCharge } : {}),
    });
  }
  return out;
}
