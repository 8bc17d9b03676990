/**
 * Backpressure end to end: a client that stops reading a stream slows decoding at the runner
 * to a crawl (kernel socket buffers are the only slack), the daemon's buffered bytes for
 * the stream stay bounded (the socket high-water mark, not the answer), and the answer completes
 * in full once the client reads again. Compared with a control client that reads, in one run
 * (a ratio, not a timing): decoding while nothing is read runs at under half the pace.
 */
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { tinyChatModel } from '../helpers/models.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Stats {
  busy: number;
  generated: number;
}

function gauge(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`${name} not in /metrics`);
  return Number(m[1]);
}

describe('backpressure from a slow client to the runner', () => {
  let daemon: DaemonProcess;
  const MODEL = 'tiny-chat';
  const MAX_TOKENS = 2000;
  const WINDOW_MS = 2000;

  beforeAll(async () => {
    const file = await tinyChatModel();
    daemon = await startDaemon({
      modelDirs: [path.dirname(file)],
      demoModel: false,
      runner: { contextSize: 4096, threads: 1, parallel: 1 },
    });
  });

  afterAll(async () => {
    await daemon?.stop();
  });

  it('slows decoding while the client does not read, keeps daemon buffers bounded, completes after', async () => {
    const load = await fetch(`${daemon.url}/admin/models/${MODEL}/load`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    const runnerUrl = ((await load.json()) as { url: string }).url;
    const stats = async (): Promise<Stats> =>
      (await (await fetch(`${runnerUrl}/stats`)).json()) as Stats;
    const body = JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: 'Talk for a long time' }],
      max_tokens: MAX_TOKENS,
      stream: true,
      ignore_eos: true,
    });
    const open = (): Promise<{ req: http.ClientRequest; res: http.IncomingMessage }> =>
      new Promise((resolve) => {
        const req = http.request(new URL('/v1/chat/completions', daemon.url), {
          method: 'POST',
          agent: false,
          headers: { 'content-type': 'application/json' },
        });
        req.on('response', (res) => {
          res.pause(); // nothing is read until the test says so
          resolve({ req, res });
        });
        req.end(body);
      });
    /** Tokens the runner generates for a stream during `ms`. */
    const generatedDuring = async (ms: number): Promise<number> => {
      const a = await stats();
      await sleep(ms);
      return (await stats()).generated - a.generated;
    };

    // Control: a client that reads as fast as it can.
    const control = await open();
    control.res.resume();
    const controlTokens = await generatedDuring(WINDOW_MS);
    control.req.destroy();
    await waitIdle(stats);

    // A client that reads nothing. The daemon stops reading from the runner as soon as the client
    // socket's buffer is full, and the runner awaits every write. What slack remains is the
    // kernel's loopback socket buffers (autotuned, up to net.ipv4.tcp_wmem's max per socket),
    // which fill more and more slowly: decoding falls far behind the reading client's pace.
    const before = await stats();
    const slow = await open();
    await sleep(5 * WINDOW_MS);
    const pausedTokens = await generatedDuring(WINDOW_MS);
    const s = await stats();
    expect(s.busy).toBe(1);
    expect(s.generated - before.generated).toBeLessThan(MAX_TOKENS);
    expect(pausedTokens * 2).toBeLessThan(controlTokens);

    const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(gauge(metrics, 'headroom_streams_active')).toBe(1);
    // The client socket's high-water mark (16 KiB) plus one chunk, never the answer so far
    // (already ~100 KiB of events at this point).
    expect(gauge(metrics, 'headroom_stream_buffered_bytes')).toBeLessThanOrEqual(64 * 1024);

    // Read again: the answer completes in full.
    let text = '';
    slow.res.setEncoding('utf8');
    slow.res.on('data', (d: string) => (text += d));
    slow.res.resume();
    await new Promise<void>((resolve) => slow.res.on('end', () => resolve()));
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    const after = await stats();
    expect(after.generated - before.generated).toBe(MAX_TOKENS);
    expect(after.busy).toBe(0);
    console.log(
      `backpressure: ${controlTokens} tokens in ${WINDOW_MS} ms reading, ${pausedTokens} not reading; ${s.generated - before.generated} of ${MAX_TOKENS} generated before the client read`,
    );
  }, 180_000);
});

async function waitIdle(stats: () => Promise<Stats>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if ((await stats()).busy === 0) return;
    await sleep(25);
  }
  throw new Error('the runner did not go idle');
}
