/**
 * What the monitor reports, as the HTTP layer and the daemon see it: a sample, a level change,
 * the events of the live stream, and the read side of the feed (MonitorFeed). Types only; the
 * sampler (sampler.ts) fills them and the daemon's feed (daemon/monitor-feed.ts) serves them.
 */
import type { PressureLevel } from './pressure.js';
import type { GpuMemory, ThermalReading } from './sysfs.js';
import type { Alert } from './trends.js';

/** A process the daemon asks the sampler to watch (its runners). */
export interface WatchedProcess {
  pid: number;
  /** The model it serves. */
  name: string;
  /** No request in flight. */
  idle: boolean;
}

export interface SampledProcess {
  role: 'daemon' | 'runner';
  name: string;
  pid: number;
  rss: number;
  rssAnon: number;
  rssFile: number;
  /** VmHWM: peak resident set since the process started. */
  peak: number;
  swap: number;
}

export interface MonitorSample {
  seq: number;
  /** Milliseconds since the epoch. */
  at: number;
  memory: {
    total: number;
    available: number;
    free: number;
    swapTotal: number;
    swapUsed: number;
    swapInPerSec: number;
    swapOutPerSec: number;
  };
  /** Memory PSI avg10 (%): the cgroup's own (v2) when it has one, else the system's. */
  psi?: { some10: number; full10?: number; source: 'cgroup' | 'system' };
  cgroup?: {
    version: 1 | 2;
    path: string;
    usage: number;
    workingSet: number;
    limit?: number;
    oomKills?: number;
  };
  processes: SampledProcess[];
  gpus: GpuMemory[];
  thermal: ThermalReading;
  pressure: {
    level: PressureLevel;
    reasons: string[];
    /** Bytes available for new work: min(MemAvailable, cgroup limit − working set). */
    available: number;
    /** min(total RAM, cgroup limit). */
    capacity: number;
    /** Bytes to free to get back under `medium` (with the hysteresis margin). */
    excessBytes: number;
  };
}

export interface LevelChange {
  at: number;
  from: PressureLevel;
  to: PressureLevel;
  reasons: string[];
}

/** One reaction to pressure, as the scheduler applied it (daemon/reactions.ts publishes these). */
export interface ReactionRecord {
  action: 'unload' | 'trim-prompt-caches' | 'cancel-request' | 'load-policy';
  model?: string;
  level: PressureLevel;
  reason: string;
  /** Memory the action returned (the runner's RSS before it stopped), bytes. */
  bytesFreed: number;
  /** From the decision to the action's end. */
  ms: number;
  outcome: 'done' | 'failed' | 'unsupported';
  error?: string;
}

/** What the live event stream carries. */
export type FeedEvent =
  | { type: 'sample'; sample: MonitorSample }
  | { type: 'level-change'; change: LevelChange }
  | { type: 'alert'; alert: Alert }
  /** Loads, unloads and evictions, as the scheduler reports them. */
  | { type: 'model'; at: number; event: { type: string; model: string } & Record<string, unknown> }
  | { type: 'reaction'; at: number; reaction: ReactionRecord };

/** The read side the HTTP layer uses (server/admin/monitor-routes.ts). */
export interface MonitorFeed {
  /** Oldest first; with `limit`, the newest `limit`. */
  history(limit?: number): MonitorSample[];
  latest(): MonitorSample | undefined;
  level(): PressureLevel;
  alerts(): { active: Alert[]; recent: Array<Alert & { resolvedAt?: number }> };
  /** Every FeedEvent from now on; returns the unsubscribe function. */
  subscribe(listener: (e: FeedEvent) => void): () => void;
}
