import { describe, expect, it } from 'vitest';
import { ServingMetrics, reasonLabel, type ModelRow } from './serving.js';

function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe('ServingMetrics', () => {
  it('records requests into the recent list and the histograms', async () => {
    let t = 0;
    const m = new ServingMetrics({ processMetrics: false, recent: 2, now: () => t });
    for (const outcome of ['done', 'cancelled', 'error'] as const) {
      const s = m.begin({ model: 'a', endpoint: '/v1/chat/completions', stream: true });
      t += 10;
      s.leased({ waitedMs: 10 });
      s.firstByte(t + 5);
      t += 50;
      s.end({
        outcome,
        status: outcome === 'error' ? 500 : 200,
        usage: { promptTokens: 10, completionTokens: 4 },
      });
    }
    expect(m.recent().map((r) => r.outcome)).toEqual(['error', 'cancelled']);
    const text = await m.exposition();
    expect(sample(text, 'headroom_requests_total', { model: 'a', outcome: 'done' })).toBe(1);
    expect(sample(text, 'headroom_requests_total', { model: 'a', outcome: 'cancelled' })).toBe(1);
    expect(
      sample(text, 'headroom_requests_cancelled_total', { model: 'a', stage: 'decoding' }),
    ).toBe(1);
    expect(sample(text, 'headroom_request_ttft_seconds_count', { model: 'a' })).toBe(1);
    expect(sample(text, 'headroom_tokens_total', { model: 'a', kind: 'completion' })).toBe(12);
  });

  it('counts loads and unloads by reason from manager events', async () => {
    const m = new ServingMetrics({ processMetrics: false });
    m.observeManagerEvent({ type: 'load-start', model: 'a', degraded: true });
    m.observeManagerEvent({ type: 'load-done', model: 'a', loadMs: 1500 });
    m.observeManagerEvent({ type: 'load-failed', model: 'b', error: 'x' });
    m.observeManagerEvent({ type: 'unload', model: 'a', reason: 'evicted for room' });
    m.observeManagerEvent({ type: 'unload', model: 'a', reason: 'something new' });
    m.observeManagerEvent({ type: 'runner-exit', model: 'a', expected: false });
    m.observeManagerEvent({ type: 'measured', model: 'a' });
    const text = await m.exposition();
    expect(sample(text, 'headroom_model_loads_total', { model: 'a', result: 'degraded' })).toBe(1);
    expect(sample(text, 'headroom_model_loads_total', { model: 'b', result: 'failed' })).toBe(1);
    expect(sample(text, 'headroom_model_load_seconds_sum', { model: 'a' })).toBe(1.5);
    expect(sample(text, 'headroom_model_unloads_total', { model: 'a', reason: 'evicted' })).toBe(1);
    expect(sample(text, 'headroom_model_unloads_total', { model: 'a', reason: 'other' })).toBe(1);
    expect(sample(text, 'headroom_runner_crashes_total', { model: 'a' })).toBe(1);
  });

  it('reads models, ledger, pressure and stream buffers at scrape time, and drops models that left', async () => {
    let rows: ModelRow[] = [
      {
        name: 'a',
        state: 'ready',
        inFlight: 1,
        queued: 2,
        predicted: 100,
        measured: 90,
        peak: 120,
        engine: 'llama-server',
      },
      { name: 'b', state: 'unloaded' },
    ];
    const now: { level: 'low' | 'high' | undefined } = { level: undefined };
    const m = new ServingMetrics({
      processMetrics: false,
      models: () => rows,
      ledger: () => ({ budget: 1000, reserved: 0, measured: 120, free: 880 }),
      pressure: () => now.level,
    });
    const res = { writableLength: 4096 };
    const untrack = m.trackStream(res);
    m.setPressureLevel('medium');
    let text = await m.exposition();
    expect(sample(text, 'headroom_model_memory_bytes', { model: 'a', kind: 'peak' })).toBe(120);
    expect(
      sample(text, 'headroom_model_memory_bytes', { model: 'b', kind: 'peak' }),
    ).toBeUndefined();
    expect(sample(text, 'headroom_model_queue_length', { model: 'a' })).toBe(2);
    expect(sample(text, 'headroom_model_state', { model: 'b', state: 'unloaded' })).toBe(1);
    expect(sample(text, 'headroom_model_info', { model: 'a', engine: 'llama-server' })).toBe(1);
    expect(text).not.toMatch(/headroom_model_info\{model="b"/);
    expect(sample(text, 'headroom_ledger_bytes', { kind: 'free' })).toBe(880);
    expect(sample(text, 'headroom_pressure_level')).toBe(1);
    expect(sample(text, 'headroom_stream_buffered_bytes')).toBe(4096);
    now.level = 'high';
    rows = [];
    untrack();
    text = await m.exposition();
    expect(sample(text, 'headroom_pressure_level')).toBe(2);
    expect(sample(text, 'headroom_pressure', { level: 'high' })).toBe(1);
    expect(
      sample(text, 'headroom_model_memory_bytes', { model: 'a', kind: 'peak' }),
    ).toBeUndefined();
    expect(sample(text, 'headroom_streams_active')).toBe(0);
  });

  it('labels unload reasons from a fixed set', () => {
    expect(reasonLabel('idle TTL expired')).toBe('ttl');
    expect(reasonLabel('pressure: high')).toBe('pressure');
    expect(reasonLabel('anything')).toBe('other');
  });
});
