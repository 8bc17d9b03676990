import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { doneLine, loadProgress, progressLine } from './progress.js';

const MiB = 1024 * 1024;
const config = { contextSize: 2048, parallel: 1, kvCacheKeyType: 'f16', engine: 'llama-server' };

describe('the load progress line', () => {
  it('shows planning, then the state with the planned config and footprint, and the time', () => {
    expect(progressLine('chat', undefined, 300, 0)).toBe('⠋ planning chat · 0.3s');
    expect(progressLine('chat', { state: 'loading', config, predicted: 64 * MiB }, 1250, 1)).toBe(
      '⠙ loading chat · ctx 2048, f16 KV, 1 slot(s) on llama-server · planned 64.0 MiB · 1.3s',
    );
  });

  it('ends with the load time and the measured memory beside the plan', () => {
    expect(
      doneLine(
        'chat',
        { state: 'ready', loadMs: 530, measured: 54 * MiB, predicted: 64 * MiB },
        900,
      ),
    ).toBe('✓ chat ready in 0.5s · RSS 54.0 MiB (planned 64.0 MiB)');
    expect(doneLine('chat', { state: 'ready', predicted: 64 * MiB }, 900)).toBe(
      '✓ chat ready in 0.9s · planned 64.0 MiB',
    );
  });

  it('redraws in place while the daemon reports, then leaves one line', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    let polls = 0;
    const p = loadProgress(out, 'chat', async () => {
      polls++;
      return { state: 'loading', config, predicted: 64 * MiB };
    });
    await new Promise((r) => setTimeout(r, 1200));
    p.done({ state: 'ready', loadMs: 1100, measured: 50 * MiB, predicted: 64 * MiB });
    p.done({ state: 'ready' }); // idempotent
    expect(polls).toBeGreaterThan(0);
    expect(text).toContain('\r\x1b[2K⠋ planning chat');
    expect(text).toContain('loading chat · ctx 2048');
    expect(text.endsWith('\r\x1b[2K✓ chat ready in 1.1s · RSS 50.0 MiB (planned 64.0 MiB)\n')).toBe(
      true,
    );
  });
});
