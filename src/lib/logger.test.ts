import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, prettyLogs } from './logger.js';

function capture(isTTY: boolean): { out: PassThrough & { isTTY?: boolean }; text: () => string } {
  const out = new PassThrough() as PassThrough & { isTTY?: boolean };
  out.isTTY = isTTY;
  let text = '';
  out.on('data', (d: Buffer) => (text += d.toString()));
  return { out, text: () => text };
}

const saved = process.env.HEADROOM_LOG_FORMAT;
afterEach(() => {
  if (saved === undefined) delete process.env.HEADROOM_LOG_FORMAT;
  else process.env.HEADROOM_LOG_FORMAT = saved;
});

describe('log format', () => {
  it('is pretty when asked, or on a terminal under auto; JSON otherwise', () => {
    expect(prettyLogs('pretty', false)).toBe(true);
    expect(prettyLogs('auto', true)).toBe(true);
    expect(prettyLogs('auto', false)).toBe(false);
    expect(prettyLogs('auto', undefined)).toBe(false);
    expect(prettyLogs('json', true)).toBe(false);
  });

  it('writes JSON lines when piped, human-readable lines on a terminal', async () => {
    delete process.env.HEADROOM_LOG_FORMAT;
    const piped = capture(false);
    createLogger({ format: 'auto', destination: piped.out }).info({ model: 'chat' }, 'loaded');
    const tty = capture(true);
    createLogger({ format: 'auto', destination: tty.out }).info({ model: 'chat' }, 'loaded');
    await new Promise((r) => setImmediate(r));
    expect(JSON.parse(piped.text())).toMatchObject({ level: 30, msg: 'loaded', model: 'chat' });
    expect(tty.text()).toMatch(/INFO.*loaded.*model.*chat/);
    expect(() => JSON.parse(tty.text())).toThrow();
  });

  it('lets HEADROOM_LOG_FORMAT override the configured format', async () => {
    process.env.HEADROOM_LOG_FORMAT = 'pretty';
    const piped = capture(false);
    createLogger({ format: 'json', destination: piped.out }).warn('careful');
    await new Promise((r) => setImmediate(r));
    expect(piped.text()).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: careful\n$/);
  });
});
