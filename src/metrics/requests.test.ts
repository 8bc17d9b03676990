import { describe, expect, it } from 'vitest';
import { RecentRequests, RequestSpan, ratesOf, type RequestRecord } from './requests.js';

function span(stream = true): { s: RequestSpan; clock: { t: number }; out: RequestRecord[] } {
  const clock = { t: 1000 };
  const out: RequestRecord[] = [];
  const s = new RequestSpan(
    1,
    { model: 'm', endpoint: '/v1/chat/completions', stream },
    () => clock.t,
    5,
    (r) => out.push(r),
  );
  return { s, clock, out };
}

describe('RequestSpan', () => {
  it('turns timings and usage into a record: queue, load, TTFT, rates', () => {
    const { s, clock, out } = span();
    clock.t = 1300;
    s.leased({ waitedMs: 300, loadMs: 200 });
    s.firstByte(1500);
    clock.t = 2500;
    const r = s.end({
      outcome: 'done',
      status: 200,
      usage: { promptTokens: 120, completionTokens: 101, cachedTokens: 20 },
    });
    expect(r).toMatchObject({
      outcome: 'done',
      stage: 'finished',
      queuedMs: 100,
      loadMs: 200,
      ttftMs: 500,
      durationMs: 1500,
      promptTokens: 120,
      cachedTokens: 20,
      completionTokens: 101,
      promptTokensPerS: 500, // 100 evaluated tokens in 200 ms
      generationTokensPerS: 100, // 100 tokens after the first in 1 s
    });
    expect(out).toHaveLength(1);
    expect(s.end({ outcome: 'error', status: 500 })).toBeUndefined();
    expect(out).toHaveLength(1);
  });

  it('infers the stage a cancelled request was in, and counts events when usage is missing', () => {
    const a = span();
    expect(a.s.end({ outcome: 'cancelled', status: 0 })?.stage).toBe('queued');
    const b = span();
    b.s.leased({ waitedMs: 0 });
    expect(b.s.end({ outcome: 'cancelled', status: 0 })?.stage).toBe('prompt');
    const c = span();
    c.s.leased({ waitedMs: 0 });
    c.s.firstByte(1001);
    const r = c.s.end({ outcome: 'cancelled', status: 200, events: 6 });
    expect(r?.stage).toBe('decoding');
    expect(r?.completionTokens).toBe(5); // minus the role event
    expect(r?.loadMs).toBeUndefined();
  });

  it('has no TTFT for answers that are not streamed', () => {
    const { s } = span(false);
    s.leased({ waitedMs: 0 });
    s.firstByte(1200);
    expect(s.end({ outcome: 'done', status: 200 })?.ttftMs).toBeUndefined();
  });
});

describe('ratesOf', () => {
  it('skips rates it cannot compute', () => {
    expect(ratesOf({})).toEqual({});
    expect(ratesOf({ decodeMs: 0, completionTokens: 5 })).toEqual({});
    expect(ratesOf({ decodeMs: 100, completionTokens: 1 })).toEqual({});
  });
});

describe('RecentRequests', () => {
  it('keeps the last N, newest first', () => {
    const ring = new RecentRequests(3);
    const rec = (id: number) => ({ id }) as RequestRecord;
    for (let i = 1; i <= 2; i++) ring.add(rec(i));
    expect(ring.list().map((r) => r.id)).toEqual([2, 1]);
    for (let i = 3; i <= 7; i++) ring.add(rec(i));
    expect(ring.list().map((r) => r.id)).toEqual([7, 6, 5]);
    expect(ring.list(2).map((r) => r.id)).toEqual([7, 6]);
  });
});
