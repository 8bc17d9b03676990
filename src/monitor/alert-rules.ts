/**
 * The alert rules: what in a sample (and in the trend of samples) deserves a person's attention,
 * with what to do about it. Pure but for its own memory of earlier samples (trends, OOM-kill
 * counts, which runners' oom_score_adj were checked); the sampler calls evaluate() once per
 * sample, after the pressure level is set.
 *
 * Rules: a leak or steady growth of a component (trends.ts); pressure at high or critical;
 * CPU thermal throttling; a new OOM kill in the cgroup; the daemon's oom_score_adj above 0
 * (raised once at the start); a runner whose oom_score_adj is not above the daemon's.
 */
import type { MonitorSample, WatchedProcess } from './feed.js';
import { AlertBook, TrendTracker, type Alert, type ComponentReading } from './trends.js';

const MiB = 1024 * 1024;

export interface AlertRulesOptions {
  /** The sampling interval, ms (the trend window counts samples). */
  intervalMs: number;
  /** Defaults to a 300 s window and 1 MiB/min as a leak. */
  trends?: { windowSeconds: number; leakMiBPerMinute: number };
  /**
   * The daemon's oom_score_adj, once the daemon made sure it is ≤ 0 where it could; undefined:
   * oom scores are not checked (not Linux, or unreadable).
   */
  daemonOomScoreAdj?: number;
  /** A process's oom_score_adj (reading.ts readOomScoreAdj); undefined when unreadable. */
  oomScoreOf: (pid: number) => number | undefined;
  /** Wall clock for the start alert. Defaults to Date.now. */
  now?: () => number;
}

export class AlertRules {
  readonly #opts: AlertRulesOptions;
  readonly #trends: TrendTracker;
  readonly #book = new AlertBook(100);
  #prevOomKills: number | undefined;
  readonly #oomChecked = new Map<number, number | undefined>();

  constructor(opts: AlertRulesOptions) {
    this.#opts = opts;
    const trends = opts.trends ?? { windowSeconds: 300, leakMiBPerMinute: 1 };
    this.#trends = new TrendTracker(
      {
        windowSeconds: trends.windowSeconds,
        leakBytesPerSec: (trends.leakMiBPerMinute * MiB) / 60,
      },
      opts.intervalMs,
    );
    const adj = opts.daemonOomScoreAdj;
    if (adj !== undefined && adj > 0) {
      const now = (opts.now ?? Date.now)();
      this.#book.raise({
        id: 'oom-score:daemon',
        severity: 'warn',
        kind: 'oom-score',
        component: 'daemon',
        message: `The daemon's oom_score_adj is ${adj} and could not be lowered to 0: under memory exhaustion the kernel may kill it before its runners.`,
        recommendation:
          'Run headroom with CAP_SYS_RESOURCE, or set OOMScoreAdjust=0 (or lower) in its systemd unit.',
        since: now,
        at: now,
      });
    }
  }

  /** The alerts now active, and the recent ones (resolved or not). */
  alerts(): { active: Alert[]; recent: Array<Alert & { resolvedAt?: number }> } {
    return { active: this.#book.active(), recent: this.#book.recent() };
  }

  /** Updates trends and the alert book from a sample; returns the alerts to announce. */
  evaluate(sample: MonitorSample, watched: readonly WatchedProcess[]): Alert[] {
    const now = sample.at;
    const idleByPid = new Map(watched.map((w) => [w.pid, w.idle]));
    const allIdle = watched.every((w) => w.idle);
    const components: ComponentReading[] = sample.processes.map((p) => ({
      key: p.role === 'daemon' ? 'daemon' : `runner:${p.name}`,
      label: p.role === 'daemon' ? 'the daemon' : `runner "${p.name}" (pid ${p.pid})`,
      pid: p.pid,
      bytes: p.rssAnon + p.swap,
      idle: p.role === 'daemon' ? allIdle : (idleByPid.get(p.pid) ?? true),
    }));
    const announce = this.#book.sync(
      ['leak', 'growth'],
      this.#trends.update(performance.now(), now, components, sample.pressure.available),
      now,
    );
    announce.push(...this.#book.sync(['pressure'], pressureAlerts(sample), now));
    announce.push(...this.#book.sync(['thermal'], thermalAlerts(sample), now));
    announce.push(...this.#oomKills(sample));
    announce.push(...this.#runnerOomScores(now, watched));
    return announce;
  }

  #oomKills(sample: MonitorSample): Alert[] {
    const kills = sample.cgroup?.oomKills;
    if (kills === undefined) return [];
    const prev = this.#prevOomKills;
    this.#prevOomKills = kills;
    if (prev === undefined || kills <= prev) return [];
    const now = sample.at;
    const a = this.#book.raise({
      id: `oom-kill:${now}`,
      severity: 'critical',
      kind: 'oom-kill',
      component: 'system',
      message: `The kernel OOM-killed ${kills - prev} process(es) in headroom's memory cgroup (${sample.cgroup!.path}).`,
      recommendation:
        'Lower the model budget or the number of loaded models, use smaller contexts or quantised KV caches, or raise the cgroup memory limit.',
      since: now,
      at: now,
      data: { oomKills: kills },
    });
    return a ? [a] : [];
  }

  /** Each new runner's oom_score_adj must exceed the daemon's (checked once per pid). */
  #runnerOomScores(now: number, watched: readonly WatchedProcess[]): Alert[] {
    const daemonAdj = this.#opts.daemonOomScoreAdj;
    if (daemonAdj === undefined) return [];
    const out: Alert[] = [];
    for (const w of watched) {
      if (this.#oomChecked.has(w.pid)) continue;
      const adj = this.#opts.oomScoreOf(w.pid);
      this.#oomChecked.set(w.pid, adj);
      if (adj !== undefined && adj <= daemonAdj) {
        const a = this.#book.raise({
          id: `oom-score:runner:${w.name}`,
          severity: 'warn',
          kind: 'oom-score',
          component: `runner:${w.name}`,
          message: `Runner "${w.name}" (pid ${w.pid}) has oom_score_adj ${adj}, not above the daemon's ${daemonAdj}: the kernel may kill the daemon first.`,
          recommendation: 'Report this: runners are started with oom_score_adj 500.',
          since: now,
          at: now,
        });
        if (a) out.push(a);
      }
    }
    const live = new Set(watched.map((w) => w.pid));
    for (const pid of this.#oomChecked.keys()) if (!live.has(pid)) this.#oomChecked.delete(pid);
    return out;
  }
}

function pressureAlerts(sample: MonitorSample): Alert[] {
  const level = sample.pressure.level;
  if (level !== 'high' && level !== 'critical') return [];
  const now = sample.at;
  return [
    {
      id: 'pressure:system',
      severity: level === 'critical' ? 'critical' : 'warn',
      kind: 'pressure',
      component: 'system',
      message: `Memory pressure is ${level}: ${sample.pressure.reasons.join('; ')}.`,
      recommendation:
        level === 'critical'
          ? 'headroom is unloading every idle model and refusing new loads. Close memory-hungry programs, unload models you do not need, or lower runner.contextSize.'
          : 'headroom is unloading idle models, least recently used first. Unload models you do not need or use smaller contexts to stay below this level.',
      since: now,
      at: now,
      data: {
        available: sample.pressure.available,
        capacity: sample.pressure.capacity,
      },
    },
  ];
}

function thermalAlerts(sample: MonitorSample): Alert[] {
  if (!sample.thermal.throttled) return [];
  const now = sample.at;
  return [
    {
      id: 'thermal:cpu',
      severity: 'info',
      kind: 'thermal',
      component: 'system',
      message: `CPU thermal throttling: ${sample.thermal.reasons.join('; ')}.`,
      recommendation:
        'New loads use a smaller batch and one thread fewer until it cools down. Improve cooling or lower runner.threads.',
      since: now,
      at: now,
    },
  ];
}
