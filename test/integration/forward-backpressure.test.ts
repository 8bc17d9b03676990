/**
 * The daemon's memory per stream stays bounded while a client reads nothing, whatever the
 * kernel's socket buffers hold. forwardToRunner runs in this process and answers on an in-memory
 * socket whose reader the test stops (no kernel buffer between the daemon and its client); the
 * runner is a fake that writes events as fast as its socket takes them. Once the reader stops,
 * headroom_stream_buffered_bytes stays within the client socket's high-water mark plus a chunk
 * until the fake runner is held up (its socket full), and a while longer; then the reader reads
 * again and gets every byte.
 *
 * The fake runner's side is a real loopback socket: how much of the answer its kernel buffers take
 * differs from machine to machine, and nothing here depends on it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RunnerConfig } from '../../src/engines/types.js';
import { sleep } from '../../src/lib/abort.js';
import { ServingMetrics } from '../../src/metrics/serving.js';
import type { Lease } from '../../src/scheduler/model-manager.js';
import { forwardToRunner } from '../../src/server/forward.js';
import { ReaderSocket } from '../helpers/reader-socket.js';

/** The client socket's writable high-water mark (Node's default for a TCP socket). */
const HIGH_WATER = 16 * 1024;
const EVENT = `data: ${JSON.stringify({ text: 'x'.repeat(4000) })}\n\n`;
const DONE = 'data: [DONE]\n\n';
/**
 * The daemon's bound per stream: the client socket's high-water mark plus one chunk read from the
 * runner (one socket read, at most 64 KiB).
 */
const MAX_BUFFERED = HIGH_WATER + 64 * 1024;

/** A fake runner: one event stream, written as fast as the socket takes it until finish(). */
class FakeRunner {
  readonly server: http.Server;
  /** Bytes of events written (the final `[DONE]` aside). */
  sent = 0;
  /** Its socket is full: it waits for the daemon to read. */
  waiting = false;
  #finishing = false;

  constructor() {
    this.server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const more = (): void => {
        this.waiting = false;
        if (this.#finishing) return void res.end(DONE);
        while (res.write(EVENT)) this.sent += EVENT.length;
        this.sent += EVENT.length;
        this.waiting = true;
        res.once('drain', more);
      };
      more();
    });
  }

  /** Ends the stream with `[DONE]` at its next write. */
  finish(): void {
    this.#finishing = true;
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
}

describe('daemon buffers for a client that reads nothing', () => {
  const runner = new FakeRunner();
  let runnerUrl: string;

  beforeAll(async () => {
    runnerUrl = await runner.listen();
  });

  afterAll(async () => {
    runner.server.closeAllConnections();
    await new Promise((resolve) => runner.server.close(resolve));
  });

  it('stay within the client socket high-water mark plus a chunk, and the answer completes', async () => {
    const metrics = new ServingMetrics({ processMetrics: false });
    const buffered = async (): Promise<number> => {
      const text = await metrics.exposition();
      return Number(/^headroom_stream_buffered_bytes (\S+)$/m.exec(text)?.[1]);
    };
    let released = 0;
    const lease: Lease = {
      model: 'fake',
      timing: { waitedMs: 0 },
      url: runnerUrl,
      config: {} as RunnerConfig,
      signal: new AbortController().signal,
      release: () => void released++,
      gone: () => Promise.resolve(false),
    };
    let ended: string | undefined;
    const daemon = http.createServer((req, res) => {
      req.resume();
      forwardToRunner({
        lease,
        path: '/v1/chat/completions',
        body: { stream: true },
        res,
        metrics,
        onEnd: (outcome) => (ended = outcome),
      });
    });
    const client = new ReaderSocket(HIGH_WATER);
    daemon.emit('connection', client);
    client.request('POST /v1/chat/completions HTTP/1.0\r\nContent-Length: 0\r\n\r\n');
    const started = performance.now();

    // The client reads the first events, then nothing. The daemon fills the client's socket and
    // stops reading from the runner, which is held up once the loopback buffers between them are
    // full. Every sample meanwhile is within the bound: a daemon that went on reading would hold
    // all the runner sent.
    client.stopReadingAfter(64 * 1024);
    let samples = 0;
    let most = 0;
    const sample = async (): Promise<void> => {
      const b = await buffered();
      expect(b).toBeLessThanOrEqual(MAX_BUFFERED);
      most = Math.max(most, b);
      samples++;
    };
    for (let i = 0; !(client.stalled && runner.waiting); i++) {
      if (i > 1000) throw new Error('the runner was never held up');
      await sample();
      await sleep(20);
    }
    const heldAfterMs = performance.now() - started;
    // And stays so while the client reads nothing, for as long again.
    const until = performance.now() + Math.max(300, heldAfterMs);
    while (performance.now() < until) {
      await sample();
      await sleep(20);
    }
    const sentWhileStopped = runner.sent;
    expect(ended).toBeUndefined();

    // The client reads again: every byte the runner sent arrives, and the exchange ends once.
    client.readAgain();
    runner.finish();
    await vi.waitFor(() => expect(ended).toBe('done'), { timeout: 30_000 });
    await vi.waitFor(() => expect(client.writableFinished).toBe(true));
    const received = client.bytes();
    const body = received.subarray(received.indexOf('\r\n\r\n') + 4);
    expect(body.length).toBe(runner.sent + DONE.length);
    expect(body.subarray(-DONE.length).toString()).toBe(DONE);
    expect(released).toBe(1);
    expect(await buffered()).toBe(0);
    console.log(
      `forward backpressure: ${samples} samples, at most ${most} bytes buffered while the client read nothing; the runner sent ${sentWhileStopped} bytes before it was held up (${Math.round(heldAfterMs)} ms), ${runner.sent} in all`,
    );
  }, 60_000);
});
