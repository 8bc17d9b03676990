import { describe, expect, it } from 'vitest';
import { loopbackServers } from '../../test/helpers/http-servers.js';
import type { Lease } from '../scheduler/model-manager.js';
import { forwardToRunner, type ForwardOutcome } from './forward.js';

// A real upstream server and a real client socket: forwardToRunner between them, as in the daemon.

const listen = loopbackServers();

function lease(url: string): Lease & { released: number } {
  const l = {
    model: 'm',
    timing: { waitedMs: 0 },
    url,
    config: {} as Lease['config'],
    signal: new AbortController().signal,
    released: 0,
    release() {
      l.released++;
    },
    gone: () => Promise.resolve(false),
  };
  return l;
}

/** Forwards one request through a daemon-like front server; resolves with what the client got. */
async function through(
  runnerUrl: string,
  extra: Partial<Parameters<typeof forwardToRunner>[0]> = {},
): Promise<{ status: number; body: string; outcome: ForwardOutcome; released: number }> {
  let outcome!: ForwardOutcome;
  const l = lease(runnerUrl);
  const front = await listen((_req, res) =>
    forwardToRunner({
      lease: l,
      path: '/v1/chat/completions',
      body: { x: 1 },
      res,
      onEnd: (o) => (outcome = o),
      ...extra,
    }),
  );
  const res = await fetch(`${front}/`, { method: 'POST', body: '{}' });
  const body = await res.text();
  return { status: res.status, body, outcome, released: l.released };
}

describe('forwardToRunner', () => {
  it('sends a request again when the kept-alive socket it reused was closed by the runner', async () => {
    // The runner answers the first request on a connection, then resets that connection when the
    // next request arrives on it (what an idle-timeout close racing a reuse looks like).
    const served = new WeakMap<object, number>();
    let answered = 0;
    const runner = await listen((req, res) => {
      const n = (served.get(req.socket) ?? 0) + 1;
      served.set(req.socket, n);
      if (n > 1) {
        req.socket.resetAndDestroy();
        return;
      }
      answered++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: answered }));
    });
    const first = await through(runner);
    expect(first).toMatchObject({ status: 200, outcome: 'done', released: 1 });
    // The second request goes out on the first one's kept-alive socket, which the runner resets.
    const second = await through(runner);
    expect(second).toMatchObject({ status: 200, outcome: 'done', released: 1 });
    expect(JSON.parse(second.body)).toEqual({ ok: 2 });
  });

  it('asks for a new connection for a streamed request when the engine does not keep it alive', async () => {
    const seen: Array<string | undefined> = [];
    const runner = await listen((req, res) => {
      seen.push(req.headers.connection);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end('data: [DONE]\n\n');
    });
    const l = lease(runner);
    const front = await listen((_req, res) =>
      forwardToRunner({
        lease: l,
        path: '/v1/chat/completions',
        body: { stream: true },
        res,
        closeAfterStream: true,
      }),
    );
    const res = await fetch(`${front}/`, { method: 'POST', body: '{}' });
    expect(await res.text()).toBe('data: [DONE]\n\n');
    expect(seen).toEqual(['close']);
  });

  it("rewrites a runner's JSON error answer through translateError into headroom's envelope", async () => {
    const runner = await listen((_req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { type: 'too_long', n: 9 } }));
    });
    const r = await through(runner, {
      translateError: (status, body) =>
        (body as { error: { type: string } }).error.type === 'too_long'
          ? { status, code: 'context_length_exceeded', message: 'too long', details: { n: 9 } }
          : undefined,
    });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({
      error: { code: 'context_length_exceeded', message: 'too long', n: 9 },
    });
    expect(r.outcome).toBe('done');
    expect(r.released).toBe(1);
  });

  it('passes an error answer it cannot translate through unchanged', async () => {
    const answer = JSON.stringify({ error: { message: 'nope', type: 'server_error' } });
    const runner = await listen((_req, res) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(answer);
    });
    const r = await through(runner, { translateError: () => undefined });
    expect(r).toMatchObject({ status: 500, body: answer, released: 1 });
  });
});
