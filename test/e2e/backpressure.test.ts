/**
 * A client that stops reading a stream, end to end (real daemon, real runner, real sockets): the
 * daemon's buffered bytes for the stream stay bounded (the client socket's high-water mark and
 * a chunk, never the answer) while the client reads nothing, and the answer completes in full
 * once it reads again.
 *
 * How far the runner gets meanwhile is not asserted: kernel socket buffers sit between the
 * client, the daemon and the runner, and their size (autotuned, up to net.ipv4.tcp_rmem and
 * tcp_wmem's maxima) differs from machine to machine; on some the whole answer fits in them and
 * the daemon never holds a byte. Without kernel buffers in the way, the daemon's bound is shown
 * by test/integration/forward-backpressure.test.ts and decoding that waits for a reader that
 * stopped by test/integration/runner-backpressure.test.ts.
 */
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sleep } from '../../src/lib/abort.js';
import { startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { describeEachEngine, runnerProbe, type RunnerProbe } from '../helpers/engines.js';
import { tinyChatModel } from '../helpers/models.js';

type Stats = Pick<RunnerProbe, 'busy' | 'generated'>;

function gauge(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`${name} not in /metrics`);
  return Number(m[1]);
}

/**
 * The daemon's bound per stream: the client socket's high-water mark (16 KiB) plus one chunk
 * read from the runner (one socket read, at most 64 KiB).
 */
const MAX_BUFFERED = 80 * 1024;

describeEachEngine('a client that stops reading a stream', (engine) => {
  let daemon: DaemonProcess;
  const MODEL = 'tiny-chat';
  const MAX_TOKENS = 1000;
  /** Samples of the daemon's gauges while the client reads nothing (every 50 ms). */
  const SAMPLES = 40;

  beforeAll(async () => {
    const file = await tinyChatModel();
    daemon = await startDaemon({
      modelDirs: [path.dirname(file)],
      demoModel: false,
      runner: { contextSize: 4096, threads: 1, parallel: 1 },
      engines: engine.engines,
    });
  });

  afterAll(async () => {
    await daemon?.stop();
  });

  it('keeps the daemon buffers bounded while the client reads nothing, completes after', async () => {
    const load = await fetch(`${daemon.url}/admin/models/${MODEL}/load`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    const runnerUrl = ((await load.json()) as { url: string }).url;
    const stats = (): Promise<Stats> => runnerProbe(engine, runnerUrl);
    const before = await stats();

    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request(new URL('/v1/chat/completions', daemon.url), {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json' },
      });
      req.on('response', (r) => {
        r.pause(); // nothing is read until the test says so
        resolve(r);
      });
      req.on('error', reject);
      req.end(
        JSON.stringify({
          model: MODEL,
          messages: [{ role: 'user', content: 'Talk for a long time' }],
          max_tokens: MAX_TOKENS,
          stream: true,
          ignore_eos: true,
        }),
      );
    });

    // While the client reads nothing: every sample of the daemon's gauges is within the bound.
    // Metrics are read before the runner's stats, so a runner still busy means the daemon was
    // still forwarding the stream when its gauges were read.
    let maxBuffered = 0;
    let sampled = 0;
    for (; sampled < SAMPLES; sampled++) {
      const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
      const s = await stats();
      const buffered = gauge(metrics, 'headroom_stream_buffered_bytes');
      const active = gauge(metrics, 'headroom_streams_active');
      maxBuffered = Math.max(maxBuffered, buffered);
      expect(buffered).toBeLessThanOrEqual(MAX_BUFFERED);
      if (s.busy === 0) {
        // The whole answer left the runner: the kernel's buffers took what the client did not.
        expect(active).toBeLessThanOrEqual(1);
        break;
      }
      expect(active).toBe(1);
      await sleep(50);
    }
    const beforeRead = (await stats()).generated - before.generated;

    // Read again: the answer completes in full.
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (d: string) => (text += d));
    res.resume();
    await new Promise<void>((resolve, reject) => {
      res.on('end', () => resolve());
      res.on('error', reject);
    });
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(text.match(/"delta":\{"content":/g)?.length).toBeGreaterThan(0);
    const after = await stats();
    expect(after.generated - before.generated).toBe(MAX_TOKENS);
    expect(after.busy).toBe(0);
    const metrics = await (await fetch(`${daemon.url}/metrics`)).text();
    expect(gauge(metrics, 'headroom_streams_active')).toBe(0);
    console.log(
      `backpressure: ${sampled} samples while the client read nothing, at most ${maxBuffered} bytes buffered in the daemon; ${beforeRead} of ${MAX_TOKENS} tokens generated before the client read`,
    );
  }, 180_000);
});
