/**
 * Backpressure inside the embedded runner: a reader that stops stops decoding. The runner's own
 * completion handler (serveCompletion) and a real engine on a forged model run in this process;
 * the HTTP response goes to an in-memory socket whose reader the test stops and resumes, so no
 * kernel buffer sits between the engine and the reader and the result is the same on every
 * machine: once the reader stops, decoding stops within the tokens whose events fit in the
 * socket's high-water mark, stays stopped while the reader does, and the answer completes in full
 * once it reads again.
 *
 * The only timed step is the check that nothing moves while the reader is stopped (a claim that
 * something does not happen needs a window): it lasts as long as the engine took to produce its
 * tokens so far, long enough for an engine that ignored the reader to produce as many again.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { serveCompletion } from '../../src/engines/embedded/completion.js';
import { Engine } from '../../src/engines/embedded/engine.js';
import { sleep } from '../../src/lib/abort.js';
import { tinyChatModel } from '../helpers/models.js';
import { ReaderSocket } from '../helpers/reader-socket.js';
import { runnerConfig } from '../helpers/runner.js';

/** What the reader takes (the headers and the first events) before it stops. */
const READ_BEFORE_STOP = 2048;
/** The socket's writable high-water mark: what the runner may write before it is told to wait. */
const HIGH_WATER = 4096;
/** An event carries id, object, created, model and choices: over 100 bytes for any token. */
const MIN_EVENT_BYTES = 100;
/**
 * The most tokens decoded before decoding waits: the events the reader took and those that fit
 * in the high-water mark, the one that crossed it, up to 3 held back by the decoder (a multi-byte
 * character), and the token counted before its event is written.
 */
const MAX_TOKENS_BEFORE_WAIT = Math.ceil((READ_BEFORE_STOP + HIGH_WATER) / MIN_EVENT_BYTES) + 5;
const MAX_TOKENS = 300;

describe('embedded runner backpressure', () => {
  let engine: Engine;

  beforeAll(async () => {
    engine = await Engine.create(
      runnerConfig(await tinyChatModel(), { contextSize: 1024, threads: 1 }),
    );
  });

  afterAll(async () => {
    await engine?.dispose();
  });

  it('stops decoding while the reader stops and completes the answer once it reads again', async () => {
    const body = {
      messages: [{ role: 'user', content: 'Talk for a long time' }],
      max_tokens: MAX_TOKENS,
      stream: true,
      stream_options: { include_usage: true },
      ignore_eos: true,
    };
    let served!: Promise<void>;
    const server = http.createServer((req, res) => {
      req.resume();
      served = serveCompletion(engine, res, 'chat', body, 'tiny-chat');
    });
    const socket = new ReaderSocket(HIGH_WATER);
    server.emit('connection', socket);
    // HTTP/1.0: the body comes unframed and the server ends the connection after it.
    socket.request('POST /v1/chat/completions HTTP/1.0\r\nContent-Length: 0\r\n\r\n');
    const started = performance.now();
    const generated = (): number => engine.counters.generated;

    // The reader takes the headers and the first events, then stops; the runner fills the
    // socket up to its high-water mark and is told to wait.
    socket.stopReadingAfter(READ_BEFORE_STOP);
    const waiting = (): boolean =>
      (socket.stalled && socket.writableNeedDrain) || generated() >= MAX_TOKENS;
    await vi.waitFor(() => expect(waiting()).toBe(true), { timeout: 30_000 });
    const atWait = generated();
    const waitAfterMs = performance.now() - started;
    expect(atWait, 'the reader stopped; decoding went on to the end').toBeLessThan(MAX_TOKENS);
    expect(atWait).toBeLessThanOrEqual(MAX_TOKENS_BEFORE_WAIT);
    // What the runner holds for the stream: the high-water mark and the event that crossed it.
    expect(socket.writableLength).toBeLessThanOrEqual(HIGH_WATER + 1024);

    // Nothing moves while the reader stays stopped.
    let settled = false;
    void served.finally(() => (settled = true));
    await sleep(Math.max(300, waitAfterMs));
    expect(generated(), 'decoding went on while the reader was stopped').toBe(atWait);
    expect(settled).toBe(false);
    expect(engine.counters.busy).toBe(1);

    // The reader reads again: the answer completes in full.
    socket.readAgain();
    await served;
    await vi.waitFor(() => expect(socket.writableFinished).toBe(true));
    const text = socket.text();
    expect(text.startsWith('HTTP/1.1 200 OK\r\n')).toBe(true);
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    const usage = /"usage":\{"prompt_tokens":\d+,"completion_tokens":(\d+)/.exec(text);
    expect(Number(usage?.[1])).toBe(MAX_TOKENS);
    expect(generated()).toBe(MAX_TOKENS);
    expect(engine.counters.busy).toBe(0);
    console.log(
      `runner backpressure: decoding waited after ${atWait} tokens (${Math.round(waitAfterMs)} ms), none more while the reader was stopped; ${MAX_TOKENS} after it read again`,
    );
  }, 120_000);
});
