import { describe, expect, it } from 'vitest';
import { AlertRules } from './alert-rules.js';
import type { MonitorSample, WatchedProcess } from './feed.js';

function sample(at: number, extra: Partial<MonitorSample> = {}): MonitorSample {
  return {
    seq: at,
    at,
    memory: {
      total: 100,
      available: 50,
      free: 50,
      swapTotal: 0,
      swapUsed: 0,
      swapInPerSec: 0,
      swapOutPerSec: 0,
    },
    processes: [],
    gpus: [],
    thermal: { throttled: false, reasons: [] } as unknown as MonitorSample['thermal'],
    pressure: { level: 'low', reasons: [], available: 50, capacity: 100, excessBytes: 0 },
    ...extra,
  };
}

describe('alert rules', () => {
  it("warns once at the start when the daemon's oom_score_adj stayed above 0", () => {
    const rules = new AlertRules({
      intervalMs: 1000,
      daemonOomScoreAdj: 200,
      oomScoreOf: () => undefined,
      now: () => 5,
    });
    expect(rules.alerts().active).toMatchObject([
      { id: 'oom-score:daemon', kind: 'oom-score', severity: 'warn', since: 5 },
    ]);
    expect(new AlertRules({ intervalMs: 1000, oomScoreOf: () => 0 }).alerts().active).toEqual([]);
  });

  it("flags a runner whose oom_score_adj is not above the daemon's, reading each pid once", () => {
    const asked: number[] = [];
    const scores: Record<number, number> = { 10: 500, 11: 0 };
    const rules = new AlertRules({
      intervalMs: 1000,
      daemonOomScoreAdj: 0,
      oomScoreOf: (pid) => {
        asked.push(pid);
        return scores[pid];
      },
    });
    const watched: WatchedProcess[] = [
      { pid: 10, name: 'good', idle: true },
      { pid: 11, name: 'bad', idle: true },
    ];
    const first = rules.evaluate(sample(1), watched);
    expect(first.map((a) => a.id)).toEqual(['oom-score:runner:bad']);
    expect(rules.evaluate(sample(2), watched)).toEqual([]);
    expect(asked).toEqual([10, 11]);
  });

  it('announces a new OOM kill in the cgroup, not the count it started with', () => {
    const rules = new AlertRules({ intervalMs: 1000, oomScoreOf: () => undefined });
    const cg = (oomKills: number) => ({
      cgroup: { version: 2 as const, path: '/x', usage: 1, workingSet: 1, oomKills },
    });
    expect(rules.evaluate(sample(1, cg(3)), [])).toEqual([]);
    expect(rules.evaluate(sample(2, cg(3)), [])).toEqual([]);
    const a = rules.evaluate(sample(3, cg(5)), []);
    expect(a).toMatchObject([{ kind: 'oom-kill', severity: 'critical', data: { oomKills: 5 } }]);
    expect(a[0]!.message).toMatch(/OOM-killed 2 process/);
  });

  it('raises a pressure alert at high and resolves it when the level falls', () => {
    const rules = new AlertRules({ intervalMs: 1000, oomScoreOf: () => undefined });
    const at = (t: number, level: MonitorSample['pressure']['level']) =>
      sample(t, {
        pressure: { level, reasons: ['r'], available: 1, capacity: 100, excessBytes: 0 },
      });
    expect(rules.evaluate(at(1, 'high'), []).map((a) => a.severity)).toEqual(['warn']);
    expect(rules.alerts().active.map((a) => a.id)).toEqual(['pressure:system']);
    rules.evaluate(at(2, 'low'), []);
    expect(rules.alerts().active).toEqual([]);
  });
});
