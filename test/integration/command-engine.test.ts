/**
 * The command engine: any OpenAI-compatible server given as argv, told its port through ${PORT},
 * ready when its health path answers, planned at the memory the config states and measured like
 * any runner. The server here is the fake runner (a real process and a real socket).
 */
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
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

/**
 * A runner whose port is closed while it exits: the kernel closes a dying process's sockets a
 * moment before its parent sees the exit, and a request leased to it in between is refused. The
 * fake runner's /close-port cue stretches that moment to a chosen length; engine-neutral, run here
 * on the command engine.
 */
const FAKE_MODEL: NonNullable<ConfigInput['models']> = {
  fake: { command: [process.execPath, FAKE, '--port=${PORT}'], health: '/health', memory: '16MiB' },
};

/** A chat that does not keep its connection: the app's close does not wait for it. */
const chatClose = (url: string): Promise<Response> =>
  fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', connection: 'close' },
    body: JSON.stringify({ model: 'fake', messages: [{ role: 'user', content: 'hi' }] }),
    signal: AbortSignal.timeout(30_000),
  });

/** Loads the model with one request and closes its runner's port; the process exits `exitMs` later. */
async function closePort(url: string, exitMs: number): Promise<number> {
  expect((await chatClose(url)).status).toBe(200);
  const { pid, url: runnerUrl } = h!.manager.status('fake');
  const res = await fetch(`${runnerUrl}/close-port?exit-ms=${exitMs}`);
  expect(res.status).toBe(200);
  await res.text();
  // The port is closed once a new connection is refused.
  for (;;) {
    const refused = await fetch(`${runnerUrl}/health`).then(
      () => false,
      () => true,
    );
    if (refused) break;
  }
  return pid!;
}

describe('a request to a runner whose port has closed', () => {
  it('waits for the exit and is served by a new runner, not answered 502', async () => {
    const url = await start(FAKE_MODEL);
    const old = await closePort(url, 300);
    const t0 = performance.now();
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 });
    const answer = await client.chat.completions.create({
      model: 'fake',
      messages: [{ role: 'user', content: 'again' }],
    });
    console.log(`served ${(performance.now() - t0).toFixed(0)} ms after the port closed`);
    expect(answer.choices[0]?.message.content).toBe('ok');
    const now = h!.manager.status('fake');
    expect(now.state).toBe('ready');
    expect(now.pid).not.toBe(old);
  });

  it('loads nothing for a client that leaves while the request waits for the exit', async () => {
    const url = await start(FAKE_MODEL);
    await closePort(url, 500);
    const res = fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fake', messages: [{ role: 'user', content: 'hi' }] }),
      signal: AbortSignal.timeout(150),
    });
    await expect(res).rejects.toThrow();
    // The exit is seen; the request, whose client is gone, must not load the model again.
    const until = Date.now() + 10_000;
    while (h!.manager.status('fake').state !== 'failed' && Date.now() < until)
      await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 300));
    expect(h!.manager.status('fake').state).toBe('failed');
  });

  it("serves Ollama's /api/chat from a new runner too", async () => {
    const url = await start(FAKE_MODEL);
    const old = await closePort(url, 300);
    const res = await fetch(`${url}/api/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'fake',
        messages: [{ role: 'user', content: 'again' }],
        stream: false,
      }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    // The fake runner streams nothing Ollama's translation reads as text: the answer is whole
    // and done, which is what this shows.
    expect(((await res.json()) as { done: boolean }).done).toBe(true);
    expect(h!.manager.status('fake').pid).not.toBe(old);
  });

  it('answers 502 runner_unreachable when the runner stays up with its port closed', async () => {
    const url = await start(FAKE_MODEL);
    const old = await closePort(url, 10_000);
    const res = await chatClose(url);
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
      'runner_unreachable',
    );
    expect(h!.manager.status('fake').pid).toBe(old);
  });
});
