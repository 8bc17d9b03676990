import { describe, expect, it } from 'vitest';
import { bar, renderTop, type TopSnapshot } from './top.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const snapshot = (over: Partial<TopSnapshot> = {}): TopSnapshot => ({
  url: 'http://127.0.0.1:8642',
  at: 1_000_000,
  budget: 8 * GiB,
  reserved: 0,
  measured: 2 * GiB,
  level: 'medium',
  sample: {
    memory: { total: 16 * GiB, available: 5 * GiB, swapTotal: 2 * GiB, swapUsed: 100 * MiB },
    pressure: { level: 'medium', available: 4 * GiB, reasons: ['available 25% < 30%'] },
    gpus: [],
  },
  models: [
    {
      name: 'chat',
      state: 'ready',
      inFlight: 1,
      queued: 2,
      pinned: false,
      config: { contextSize: 4096, parallel: 2, kvCacheKeyType: 'q8_0', engine: 'llama-server' },
      predicted: 2.1 * GiB,
      measured: 2 * GiB,
      peak: 2.2 * GiB,
      expiresAt: 1_000_000 + 125_000,
    },
    { name: 'embed', state: 'unloaded', inFlight: 0, queued: 0, pinned: true },
  ],
  requests: [
    {
      startedAt: 999_000,
      model: 'chat',
      endpoint: '/v1/chat/completions',
      outcome: 'done',
      status: 200,
      queuedMs: 3,
      loadMs: 1500,
      ttftMs: 40,
      generationTokensPerS: 31.25,
      durationMs: 900,
    },
  ],
  ...over,
});

describe('bar', () => {
  it('fills in proportion, clamped to its width, empty for an unknown whole', () => {
    expect(bar(1, 4, 8)).toBe('[██░░░░░░]');
    expect(bar(9, 4, 4)).toBe('[████]');
    expect(bar(1, 0, 3)).toBe('[░░░]');
    expect(bar(1, 1000, 4)).toBe('[█░░░]');
    expect(bar(0, 1000, 4)).toBe('[░░░░]');
    expect(bar(1, Number.POSITIVE_INFINITY, 3)).toBe('[░░░]');
  });
});

describe('renderTop', () => {
  it('shows each active alert with its recommendation', () => {
    const text = renderTop(
      snapshot({
        alerts: [
          {
            severity: 'warn',
            component: 'runner:chat',
            message: 'Runner "chat" grows 3 MiB/min while idle.',
            recommendation: 'Restart it: headroom unload chat.',
          },
        ],
      }),
    );
    expect(text).toContain(
      '! warn runner:chat: Runner "chat" grows 3 MiB/min while idle.\n  → Restart it: headroom unload chat.\n',
    );
  });

  it('shows pressure with its reasons, RAM, swap, the budget bar and a bar per loaded model', () => {
    const text = renderTop(snapshot(), 100);
    const lines = text.split('\n');
    expect(lines[0]).toBe(
      'headroom http://127.0.0.1:8642 · pressure medium · RAM 4.0 GiB available of 16.0 GiB · swap 100 MiB of 2.0 GiB',
    );
    expect(lines[1]).toBe('  why: available 25% < 30%');
    expect(text).toMatch(/^budget {13}\[█{11}░{31}\] 2\.0 GiB of 8\.0 GiB$/m);
    expect(text).toMatch(/^ {2}chat {13}\[█+░+\] 2\.0 GiB \(predicted 2\.1 GiB, peak 2\.2 GiB\)$/m);
    // An unloaded model has a row in the table but no bar.
    expect(text).not.toMatch(/^ {2}embed/m);
  });

  it('lists the models with config, memory, requests and the TTL, and the last requests', () => {
    const text = renderTop(snapshot(), 100);
    expect(text).toMatch(
      /^chat +ready +llama-server +4096 +2 +q8_0 +2\.1 GiB +2\.0 GiB +2\.2 GiB +1 +2 +2m05s$/m,
    );
    expect(text).toMatch(/^embed +unloaded +- +- +- +- +- +- +- +0 +0 +-$/m);
    expect(text).toMatch(/chat +\/v1\/chat\/completions +done +3ms +1\.5s +40ms +31\.3 +900ms/);
  });

  it('says when the monitor is off and when there is no budget', () => {
    const { sample: _s, level: _l, ...rest } = snapshot();
    const text = renderTop({ ...rest, budget: null }, 80);
    expect(text.split('\n')[0]).toBe(
      'headroom http://127.0.0.1:8642 · pressure unknown (monitor off)',
    );
    expect(text).toContain('budget: none (unlimited) · 2.0 GiB used by models');
  });

  it('draws each GPU against its own memory', () => {
    const s = snapshot();
    s.sample!.gpus = [{ index: 0, name: 'RTX', total: 8 * GiB, used: 2 * GiB }];
    expect(renderTop(s, 100)).toMatch(/^GPU 0 {14}\[█+░+\] 2\.0 GiB of 8\.0 GiB \(RTX\)$/m);
  });
});
