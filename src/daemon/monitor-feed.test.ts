import { afterEach, describe, expect, it } from 'vitest';
import type { FeedEvent } from '../monitor/feed.js';
import { thresholdsFromConfig, defaultThresholds } from '../monitor/pressure.js';
import { Sampler } from '../monitor/sampler.js';
import { MonitorHub } from './monitor-feed.js';

const GiB = 1024 ** 3;
const owned: Sampler[] = [];
afterEach(async () => {
  for (const s of owned.splice(0)) await s.dispose();
});

describe("the daemon's monitor feed", () => {
  it("carries the sampler's samples, level changes and alerts in order, then what others publish", async () => {
    const s = await Sampler.create({ start: false });
    owned.push(s);
    const hub = new MonitorHub(s);
    const events: FeedEvent[] = [];
    const off = hub.subscribe((e) => events.push(e));
    const x = await s.sampleNow();
    hub.publish({ type: 'model', at: 1, event: { type: 'load-start', model: 'm' } });
    expect(events.map((e) => e.type)).toEqual(['sample', 'model']);
    expect(events[0]).toEqual({ type: 'sample', sample: x });
    expect(hub.latest()).toBe(x);
    expect(hub.level()).toBe(s.level());
    off();
    expect(hub.listenerCount('event')).toBe(0);
    hub.dispose();
    await s.sampleNow();
    expect(events).toHaveLength(2);
  });

  it('passes level changes and alerts on as events', async () => {
    const t = thresholdsFromConfig(
      defaultThresholds({
        nominalBytes: 24 * GiB,
        reserveBytes: 4 * GiB,
        lowMemory: false,
        level: 'basic',
      }),
      { availablePercent: { medium: 100, high: 100, critical: 100 } },
    );
    // Thresholds no machine meets: create()'s first sample raised a critical pressure alert.
    const s = await Sampler.create({ start: false, thresholds: t });
    owned.push(s);
    const hub = new MonitorHub(s);
    const types: string[] = [];
    hub.subscribe((e) => types.push(e.type));
    // Emitted by the sampler as it would be: the hub passes each on with its own type.
    s.emit('level-change', { at: 1, from: 'low', to: 'critical', reasons: ['x'] });
    s.emit('alert', s.alerts().active[0]!);
    expect(types).toEqual(['level-change', 'alert']);
    hub.dispose();
  });
});
