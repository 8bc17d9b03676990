import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive, startTinyChatDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { testLlamaServerBinary } from '../helpers/engines.js';

/**
 * Runner faults with real processes: a real daemon, real llama-server runners on a forged model,
 * and real faults: SIGKILL mid-stream, SIGSTOP (a hang: the socket accepts, nothing answers),
 * and a frozen runner that cannot act on SIGTERM when it is unloaded. Durations are printed, not
 * asserted; the bounds below only turn a hang into a failure.
 */

const MODEL = 'tiny-chat';
const binary = testLlamaServerBinary();

interface AdminModel {
  name: string;
  state: string;
  pid?: number;
}

async function model(d: DaemonProcess): Promise<AdminModel> {
  const body = (await (await fetch(`${d.url}/admin/models`)).json()) as { models: AdminModel[] };
  return body.models.find((m) => m.name === MODEL)!;
}

async function waitFor<T>(fn: () => Promise<T | undefined>, what: string, ms = 30_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function chat(d: DaemonProcess, maxTokens = 2): Promise<Response> {
  return fetch(`${d.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: maxTokens,
    }),
    signal: AbortSignal.timeout(60_000),
  });
}

/** Streams a long answer, runs `fault(pid)` after 3 events; returns the events and the ms from the fault to the stream's end. */
async function streamWithFault(
  d: DaemonProcess,
  fault: (pid: number) => void,
): Promise<{ events: string[]; afterFaultMs: number }> {
  const res = await fetch(`${d.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: 'A long answer please' }],
      max_tokens: 2000,
      stream: true,
      ignore_eos: true,
    }),
    signal: AbortSignal.timeout(60_000),
  });
  expect(res.status).toBe(200);
  const pid = (await model(d)).pid!;
  const events: string[] = [];
  let faultAt = 0;
  let buf = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (ev.startsWith('data: ')) events.push(ev.slice(6));
      if (events.length === 3 && faultAt === 0) {
        faultAt = performance.now();
        fault(pid);
      }
    }
  }
  return { events, afterFaultMs: performance.now() - faultAt };
}

describe.skipIf('missing' in binary)('runner faults (llama-server)', () => {
  let daemon: DaemonProcess;

  beforeAll(async () => {
    if ('missing' in binary) console.warn(`skipped: no llama-server: ${binary.missing}`);
    daemon = await startTinyChatDaemon({
      runner: { contextSize: 2048, threads: 1 },
      limits: { healthInterval: '300ms', healthTimeout: '1s', stopGrace: '500ms' },
      monitor: { enabled: false },
      // The stop path itself is under test, not the state save that precedes an unload.
      state: { enabled: false },
    });
  });

  afterAll(async () => {
    await daemon?.stop();
  });

  it('ends the stream with an error event when the runner is SIGKILLed mid-stream, and reloads', async () => {
    expect((await chat(daemon)).status).toBe(200);
    const { events, afterFaultMs } = await streamWithFault(daemon, (pid) =>
      process.kill(pid, 'SIGKILL'),
    );
    console.log(
      `SIGKILL mid-stream: the client's stream ended ${afterFaultMs.toFixed(0)} ms later`,
    );
    const last = JSON.parse(events.at(-1)!) as { error?: { code: string; message: string } };
    expect(last.error?.code).toBe('runner_failed');
    expect(last.error?.message).toMatch(/retry/);
    expect(afterFaultMs).toBeLessThan(10_000);
    const first = await waitFor(async () => {
      const m = await model(daemon);
      return m.state === 'failed' ? m : undefined;
    }, 'state failed');
    expect(first.state).toBe('failed');
    const res = await chat(daemon);
    expect(res.status, await res.text()).toBe(200);
    expect((await model(daemon)).state).toBe('ready');
  });

  it('SIGKILLs a frozen runner that cannot act on SIGTERM once the grace is over', async () => {
    expect((await chat(daemon)).status).toBe(200);
    const { pid } = await model(daemon);
    process.kill(pid!, 'SIGSTOP');
    const t0 = performance.now();
    const res = await fetch(`${daemon.url}/admin/models/${MODEL}/unload`, { method: 'POST' });
    expect(res.status, await res.text()).toBe(200);
    console.log(`unload of a frozen runner took ${(performance.now() - t0).toFixed(0)} ms`);
    expect(isAlive(pid!)).toBe(false);
    const log = await readFile(path.join(daemon.home, 'logs', `${MODEL}.log`), 'utf8');
    expect(log).toMatch(/still running after 500 ms: SIGKILL/);
  });

  it('takes a runner that hangs while idle for hung, kills it, and loads it again', async () => {
    expect((await chat(daemon)).status).toBe(200);
    const { pid } = await model(daemon);
    process.kill(pid!, 'SIGSTOP');
    const t0 = performance.now();
    await waitFor(
      async () => ((await model(daemon)).state === 'failed' ? true : undefined),
      'failed',
    );
    console.log(
      `an idle runner frozen by SIGSTOP was killed ${(performance.now() - t0).toFixed(0)} ms later`,
    );
    expect(isAlive(pid!)).toBe(false);
    const res = await chat(daemon);
    expect(res.status, await res.text()).toBe(200);
    expect((await model(daemon)).pid).not.toBe(pid);
  });

  it('serves a request sent to a frozen runner from the runner loaded once it is killed', async () => {
    expect((await chat(daemon)).status).toBe(200);
    const { pid } = await model(daemon);
    process.kill(pid!, 'SIGSTOP');
    const t0 = performance.now();
    // Leased to the frozen runner: its kernel accepts the connection, nothing answers, and the
    // kill resets it. The daemon waits for the exit and sends the request to a new runner.
    const res = await chat(daemon);
    console.log(
      `a request sent to a frozen runner was answered ${(performance.now() - t0).toFixed(0)} ms later`,
    );
    expect(res.status, await res.text()).toBe(200);
    expect(isAlive(pid!)).toBe(false);
    expect((await model(daemon)).pid).not.toBe(pid);
  });

  it('ends the stream with an error event when the runner hangs mid-stream', async () => {
    expect((await chat(daemon)).status).toBe(200);
    const { events, afterFaultMs } = await streamWithFault(daemon, (pid) =>
      process.kill(pid, 'SIGSTOP'),
    );
    console.log(
      `SIGSTOP mid-stream: the client's stream ended ${afterFaultMs.toFixed(0)} ms later`,
    );
    const last = JSON.parse(events.at(-1)!) as { error?: { code: string } };
    expect(last.error?.code).toBe('runner_failed');
    const res = await chat(daemon);
    expect(res.status, await res.text()).toBe(200);
  });
});
