/**
 * Cancellation at every stage: a client that leaves while its request is queued, while its model
 * loads, while the runner evaluates its prompt, or while it decodes. Each must free the slot and
 * the lease, stop the runner's work, leave no timers behind, and leave other requests alone.
 *
 * The daemon runs in this process (real runners, real sockets) so that its timers can be counted.
 * Races are made deterministic by waiting for observable states before aborting: the model's
 * queue length, its `loading` state, the runner's tokens in use (prompt evaluation under way, no
 * token generated yet), and streamed chunks.
 */
import http from 'node:http';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Daemon } from '../../src/daemon/daemon.js';
import { silentLogger } from '../../src/lib/logger.js';
import { describeEachEngine, runnerProbe, type RunnerProbe } from '../helpers/engines.js';
import { cachedModel, tinyChatModel } from '../helpers/models.js';

interface AdminModel {
  name: string;
  state: string;
  url?: string;
  inFlight: number;
  queued?: number;
}
interface RequestRow {
  model: string;
  outcome: string;
  stage: string;
  completionTokens?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(
  fn: () => Promise<T | undefined>,
  what: string,
  timeoutMs = 20_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A streaming request on a fresh connection; `abort()` closes it like a client that leaves. */
function openStream(
  base: string,
  body: unknown,
): {
  chunks: () => number;
  text: () => string;
  status: Promise<number>;
  done: Promise<string>;
  abort: () => void;
} {
  let chunks = 0;
  let text = '';
  let setStatus!: (s: number) => void;
  const status = new Promise<number>((r) => (setStatus = r));
  let req!: http.ClientRequest;
  const done = new Promise<string>((resolve) => {
    req = http.request(new URL('/v1/chat/completions', base), {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json' },
    });
    req.on('response', (res) => {
      setStatus(res.statusCode ?? 0);
      res.on('data', (d: Buffer) => {
        chunks++;
        text += d.toString();
      });
      res.on('end', () => resolve('end'));
      res.on('error', () => resolve('error'));
      res.on('aborted', () => resolve('aborted'));
    });
    req.on('error', () => resolve('error'));
    req.on('close', () => resolve('closed'));
    req.end(JSON.stringify(body));
  });
  return { chunks: () => chunks, text: () => text, status, done, abort: () => req.destroy() };
}

const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describeEachEngine('cancellation at every stage', (engine) => {
  let daemon: Daemon;
  let base: string;
  const A = 'tiny-chat';
  const B = 'tiny-chat-b';
  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);

  const admin = async (name: string): Promise<AdminModel> => {
    const body = (await (await fetch(`${base}/admin/models`)).json()) as { models: AdminModel[] };
    return body.models.find((m) => m.name === name)!;
  };
  const stats = async (name: string): Promise<RunnerProbe> =>
    runnerProbe(engine, (await admin(name)).url!);
  const lastRequest = async (): Promise<RequestRow | undefined> =>
    ((await (await fetch(`${base}/admin/requests?limit=1`)).json()) as { requests: RequestRow[] })
      .requests[0];
  const idle = (name: string) =>
    waitFor(async () => {
      const [m, s] = [await admin(name), await stats(name)];
      return m.inFlight === 0 && (m.queued ?? 0) === 0 && s.busy === 0 && s.queued === 0
        ? s
        : undefined;
    }, `${name} to go idle`);
  const longBody = (model: string, extra: Record<string, unknown> = {}) => ({
    model,
    messages: [{ role: 'user', content: 'Go on forever' }],
    max_tokens: 3000,
    stream: true,
    ignore_eos: true,
    ...extra,
  });

  const longPrompt = Array.from({ length: 700 }, (_, i) => `word${i} more`).join(' ');
  /**
   * Prompt evaluation is under way: the runner is busy, has evaluated a chunk of it (its work
   * moved and tokens are in its cells), and has generated nothing yet.
   */
  const promptUnderWay = (before: RunnerProbe) =>
    waitFor(async () => {
      const st = await stats(A);
      return st.busy === 1 &&
        st.work > before.work &&
        st.tokensInUse > 64 &&
        st.generated === before.generated
        ? st
        : undefined;
    }, 'prompt evaluation to start');

  beforeAll(async () => {
    process.on('warning', onWarning);
    const file = await tinyChatModel();
    await cachedModel('tiny-chat-b', {
      params: 15_000_000,
      type: 'f16',
      ctx: 4096,
      chatTemplate: 'chatml',
      seed: 8,
    });
    daemon = await Daemon.start({
      home: await mkdtemp(path.join(os.tmpdir(), 'headroom-cancel-')),
      log: silentLogger(),
      config: {
        port: 0,
        demoModel: false,
        modelDirs: [path.dirname(file)],
        runner: { contextSize: 4096, threads: 1, parallel: 1 },
        engines: engine.engines,
      },
    });
    base = daemon.url;
  });

  afterAll(async () => {
    process.off('warning', onWarning);
    await daemon?.close();
  });

  it('while loading: the waiter leaves, the shared load finishes, nothing holds the model', async () => {
    const s = openStream(base, longBody(B));
    await waitFor(
      async () => ((await admin(B)).state === 'loading' ? true : undefined),
      'the load to start',
    );
    s.abort();
    expect(await s.done).not.toBe('end');
    await waitFor(
      async () => ((await lastRequest())?.model === B ? true : undefined),
      'the record',
    );
    expect(await lastRequest()).toMatchObject({ model: B, outcome: 'cancelled', stage: 'loading' });
    const ready = await waitFor(async () => {
      const m = await admin(B);
      return m.state === 'ready' ? m : undefined;
    }, 'the load to finish');
    expect(ready.inFlight).toBe(0);
    const st = await idle(B);
    expect(st.work).toBe(0); // the runner never saw the request
  });

  it('while decoding: the runner stops, the slot and the lease are freed, the queued request behind it is served in full', async () => {
    // warm the model so later stages are not loads
    const warm = openStream(base, { ...longBody(A), max_tokens: 2 });
    expect(await warm.done).toBe('end');
    const baselineTimers = timers();
    const first = openStream(base, longBody(A));
    await waitFor(async () => (first.chunks() >= 3 ? true : undefined), 'first tokens');
    const second = openStream(base, { ...longBody(A), max_tokens: 24 });
    await waitFor(
      async () => ((await admin(A)).queued === 1 ? true : undefined),
      'the second request to queue',
    );
    first.abort();
    expect(await second.done).toBe('end');
    expect(await second.status).toBe(200);
    expect(second.text()).toContain('[DONE]');
    const st = await idle(A);
    await sleep(200);
    expect((await stats(A)).generated).toBe(st.generated);
    const recent = (
      (await (await fetch(`${base}/admin/requests?limit=2`)).json()) as { requests: RequestRow[] }
    ).requests;
    expect(recent[0]).toMatchObject({ outcome: 'done', completionTokens: 24 });
    expect(recent[1]).toMatchObject({ outcome: 'cancelled', stage: 'decoding' });
    expect(recent[1]!.completionTokens!).toBeLessThan(3000);
    expect(timers()).toBeLessThanOrEqual(baselineTimers);
  });

  it('while queued: the request leaves the queue without reaching the runner; the running one goes on', async () => {
    const before = await stats(A);
    const running = openStream(base, longBody(A));
    await waitFor(async () => (running.chunks() >= 2 ? true : undefined), 'first tokens');
    const taking = await stats(A);
    expect(taking.taken).not.toBe(before.taken);
    const queued = openStream(base, longBody(A));
    await waitFor(
      async () => ((await admin(A)).queued === 1 ? true : undefined),
      'the request to queue',
    );
    // The daemon holds it: the runner has nothing waiting.
    expect((await stats(A)).queued).toBe(0);
    queued.abort();
    await waitFor(
      async () => ((await admin(A)).queued === 0 ? true : undefined),
      'the queue to empty',
    );
    expect(await lastRequest()).toMatchObject({ outcome: 'cancelled', stage: 'queued' });
    const seen = running.chunks();
    await waitFor(
      async () => (running.chunks() > seen + 5 ? true : undefined),
      'the running stream to go on',
    );
    running.abort();
    const st = await idle(A);
    // Only the running one reached the runner: it took no request after that one.
    expect(st.taken).toBe(taking.taken);
    if (engine.kind === 'embedded') expect(st.requests).toBe(before.requests! + 1);
  });

  it.runIf(engine.capabilities.cancelsPromptEvaluation)(
    'while evaluating a long prompt: the runner stops within a chunk and generates nothing',
    async () => {
      const before = await idle(A);
      const s = openStream(base, {
        ...longBody(A),
        messages: [{ role: 'user', content: longPrompt }],
        max_tokens: 4,
      });
      const during = await promptUnderWay(before);
      s.abort();
      const after = await idle(A);
      expect(after.generated).toBe(before.generated);
      if (engine.kind === 'embedded') expect(after.requests).toBe(before.requests! + 1);
      await waitFor(
        async () => ((await lastRequest())?.outcome === 'cancelled' ? true : undefined),
        'the record',
      );
      expect(await lastRequest()).toMatchObject({ outcome: 'cancelled', stage: 'prompt' });
      const later = await stats(A);
      // The runner stopped short of the full prompt (it would fill well over 1000 tokens).
      expect(later.tokensInUse).toBeLessThan(1400);
      expect(during.tokensInUse).toBeGreaterThan(64);
    },
  );

  it('many cancellations leave no listener warnings and the model serves normally after', async () => {
    for (let i = 0; i < 12; i++) {
      const s = openStream(base, longBody(A));
      await waitFor(async () => (s.chunks() >= 1 ? true : undefined), 'a token');
      s.abort();
      await s.done;
    }
    await idle(A);
    const ok = openStream(base, { ...longBody(A), max_tokens: 8 });
    expect(await ok.done).toBe('end');
    expect(warnings.filter((w) => /MaxListeners/.test(w))).toEqual([]);
    expect((await admin(A)).inFlight).toBe(0);
  });
});
