/**
 * The command engine: any OpenAI-compatible server given as argv, told its port through ${PORT},
 * ready when its health path answers, planned at the memory the config states and measured like
 * any runner. The server here is the fake runner (a real process and a real socket).
 */
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { ConfigInput } from '../../src/config/schema.js';
import { Headroom } from '../../src/daemon/headroom.js';
import { silentLogger } from '../../src/lib/logger.js';
import { createApp } from '../../src/server/app.js';

const FAKE = fileURLToPath(new URL('../fixtures/fake-runner.mjs', import.meta.url));
const MiB = 1024 * 1024;

let h: Headroom | undefined;
let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  await h?.dispose();
  h = undefined;
  close = undefined;
});

async function start(
  models: NonNullable<ConfigInput['models']>,
  extra: Partial<ConfigInput> = {},
): Promise<string> {
  h = await Headroom.create({
    home: await mkdtemp(path.join(os.tmpdir(), 'headroom-command-')),
    log: silentLogger(),
    config: { demoModel: false, monitor: { enabled: false }, models, ...extra },
  });
  const app = createApp(h, { log: silentLogger(), bodyLimit: 1 << 20 });
  await app.listen({ host: '127.0.0.1', port: 0 });
  close = () => app.close();
  const addr = app.server.address();
  return `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}

const chat = (url: string, model: string): Promise<Response> =>
  fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  });

describe('the command engine', () => {
  it('runs the command with its port filled in, serves through it, and charges the stated memory', async () => {
    const url = await start({
      speech: {
        command: [process.execPath, FAKE, '--port=${PORT}', '--load-ms=200', '--memory-mb=8'],
        health: '/health',
        memory: '64MiB',
      },
    });
    const res = await chat(url, 'speech');
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: Array<{ message: { content: string } }> };
    expect(body.choices[0]!.message.content).toBe('ok');
    const s = h!.manager.status('speech');
    expect(s.state).toBe('ready');
    expect(s.config?.engine).toBe('command');
    expect(s.predicted).toBe(64 * MiB);
    // The ledger holds at least what was stated (more once a measurement says so).
    expect(s.allocated).toBeGreaterThanOrEqual(64 * MiB);
    expect(s.pid).toBeTypeOf('number');
  });

  it('refuses a load the stated memory cannot fit, saying what is free', async () => {
    const url = await start({
      huge: { command: [process.execPath, FAKE, '--port=${PORT}'], memory: '64TiB' },
    });
    const res = await chat(url, 'huge');
    expect(res.status).toBe(503);
    const body = (await res.json()) as { error: { message: string } };
    expect(body.error.message).toMatch(/stated to take \d+ MiB/);
  });

  it('fails the load with the log tail when the command never answers its health path', async () => {
    const url = await start(
      {
        sick: {
          command: [process.execPath, FAKE, '--port=${PORT}', '--health-status=503'],
          health: '/health',
        },
      },
      { limits: { loadTimeout: '2s' } },
    );
    const res = await fetch(`${url}/admin/models/sick/load`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({}),
    });
    expect(res.status).toBe(503);
    const body = (await res.json()) as { error: { message: string } };
    expect(body.error.message).toContain('was not ready within 2000 ms');
    expect(body.error.message).toContain('fake runner listening');
  });
});
