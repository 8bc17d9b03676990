import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import { MonitorHub } from '../../daemon/monitor-feed.js';
import { Sampler } from '../../monitor/sampler.js';
import { testServerCore } from '../../../test/helpers/server-core.js';
import { createApp } from '../app.js';
import type { ServerCore } from '../core.js';

function core(monitor: MonitorHub | undefined): ServerCore {
  return testServerCore(monitor ? { core: { monitor } } : {});
}

const sampler = await Sampler.create({ start: false, historySize: 5 });
// The daemon's feed over it: the event stream with the scheduler's events.
const feed = new MonitorHub(sampler);
afterAll(() => {
  feed.dispose();
  return sampler.dispose();
});

describe('monitor routes', () => {
  const app = createApp(core(feed), { log: silentLogger(), bodyLimit: 1024 });

  it('GET /admin/resources/history returns the ring buffer, newest last, with a limit', async () => {
    for (let i = 0; i < 6; i++) await sampler.sampleNow();
    const all = (await app.inject({ url: '/admin/resources/history' })).json();
    expect(all.level).toBe(sampler.level());
    expect(all.samples).toHaveLength(5);
    expect(all.samples.at(-1).seq).toBe(sampler.latest()!.seq);
    expect(all.samples[0].memory.total).toBeGreaterThan(0);
    const two = (await app.inject({ url: '/admin/resources/history?limit=2' })).json();
    expect(two.samples.map((s: { seq: number }) => s.seq)).toEqual(
      all.samples.slice(-2).map((s: { seq: number }) => s.seq),
    );
    const bad = await app.inject({ url: '/admin/resources/history?limit=0' });
    expect(bad.statusCode).toBe(400);
  });

  it('GET /admin/alerts returns active and recent alerts', async () => {
    const res = await app.inject({ url: '/admin/alerts' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ active: expect.any(Array), recent: expect.any(Array) });
  });

  it('answers 503 with a reason when the monitor is off, and 400 for an unknown event type', async () => {
    const off = createApp(core(undefined), { log: silentLogger(), bodyLimit: 1024 });
    const res = await off.inject({ url: '/admin/alerts' });
    expect(res.statusCode).toBe(503);
    expect(res.json().error).toMatchObject({ code: 'monitor_disabled' });
    const bad = await app.inject({ url: '/admin/events?types=sample,nope' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.message).toMatch(/unknown event type\(s\) nope/);
  });

  // SSE needs a real connection to observe a client leaving: this test opens a loopback port.
  it('GET /admin/events streams hello, samples and published events, and drops its listener when the client leaves', async () => {
    const server = createApp(core(feed), { log: silentLogger(), bodyLimit: 1024 });
    await server.listen({ host: '127.0.0.1', port: 0 });
    try {
      const { port } = server.server.address() as AddressInfo;
      const before = feed.listenerCount('event');
      let text = '';
      const req = http.get(`http://127.0.0.1:${port}/admin/events?types=sample,reaction`);
      const res = await new Promise<http.IncomingMessage>((r) => req.once('response', r));
      expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
      const got = (pattern: RegExp): Promise<void> =>
        new Promise((resolve) => {
          const check = (): void => {
            if (pattern.test(text)) {
              res.off('data', onData);
              resolve();
            }
          };
          const onData = (d: Buffer): void => {
            text += d.toString();
            check();
          };
          res.on('data', onData);
          check();
        });
      await got(/event: hello\n/);
      expect(feed.listenerCount('event')).toBe(before + 1);
      const s = await sampler.sampleNow();
      await got(new RegExp(`event: sample\\ndata: \\{"seq":${s.seq},`));
      feed.publish({ type: 'model', at: 1, event: { type: 'load-start', model: 'x' } });
      feed.publish({
        type: 'reaction',
        at: 2,
        reaction: {
          action: 'unload',
          model: 'x',
          level: 'high',
          reason: 'test',
          bytesFreed: 5,
          ms: 1,
          outcome: 'done',
        },
      });
      await got(/event: reaction\ndata: \{"at":2,"reaction":\{"action":"unload"/);
      expect(text).not.toMatch(/event: model/); // filtered out by ?types
      req.destroy();
      await vi.waitFor(() => expect(feed.listenerCount('event')).toBe(before));
    } finally {
      await server.close();
    }
  });
});
