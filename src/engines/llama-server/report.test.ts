import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { BuildEvent } from './builder.js';
import { buildReporter } from './report.js';

function capture(tty: boolean): { out: PassThrough & { isTTY?: boolean }; text: () => string } {
  const out = new PassThrough() as PassThrough & { isTTY?: boolean };
  out.isTTY = tty;
  let text = '';
  out.on('data', (d: Buffer) => (text += d.toString()));
  return { out, text: () => text };
}

const events: BuildEvent[] = [
  {
    type: 'start',
    key: 'v0.5.0-cpu-0123456789',
    backend: 'cpu',
    tag: 'v0.5.0',
    how: 'prebuilt-libs',
    estimate: 'about 3 min',
  },
  { type: 'phase', phase: 'clone', how: 'prebuilt-libs' },
  { type: 'phase', phase: 'compile', how: 'prebuilt-libs' },
  ...Array.from({ length: 40 }, (_, i): BuildEvent => ({
    type: 'progress',
    progress: { done: i + 1, total: 40 },
  })),
  { type: 'phase', phase: 'check', how: 'prebuilt-libs' },
];

describe('buildReporter', () => {
  it('prints plain lines off a terminal: phases, then each 10 % of the compile', () => {
    const { out, text } = capture(false);
    const r = buildReporter(out, 'x');
    for (const e of events) r.onEvent(e);
    r.end();
    const lines = text().trimEnd().split('\n');
    expect(lines[0]).toBe(
      'x: building llama.cpp v0.5.0 for cpu (prebuilt-libs); this usually takes about 3 min here. Output: v0.5.0-cpu-0123456789',
    );
    expect(lines.filter((l) => l.startsWith('x: compiling'))).toEqual([
      'x: compiling 2% (1/40)',
      'x: compiling 10% (4/40)',
      'x: compiling 20% (8/40)',
      'x: compiling 30% (12/40)',
      'x: compiling 40% (16/40)',
      'x: compiling 50% (20/40)',
      'x: compiling 60% (24/40)',
      'x: compiling 70% (28/40)',
      'x: compiling 80% (32/40)',
      'x: compiling 90% (36/40)',
      'x: compiling 100% (40/40)',
    ]);
    expect(lines.at(-1)).toBe('x: check');
    expect(text()).not.toContain('\r');
  });

  it('redraws one bar on a terminal and ends its line before the next message', () => {
    const { out, text } = capture(true);
    const r = buildReporter(out, 'x');
    for (const e of events) r.onEvent(e);
    r.end();
    expect(text()).toContain('\rx: compiling [############------------]  50% (20/40)');
    expect(text()).toContain('(40/40)\nx: check\n');
  });
});
