import http from 'node:http';
import type { ServerResponse } from 'node:http';
import type { Lease } from '../scheduler/model-manager.js';

/**
 * Forwards one request to a runner and streams its answer back to the client.
 *
 * Contracts:
 * - Backpressure end to end: the runner's response is piped into the client's socket, so a
 *   client that reads slowly stops our reads from the runner, which stops its writes, which
 *   stops its decoding. The daemon buffers at most the sockets' high-water marks.
 * - A client that goes away destroys the upstream request at once; the runner sees its socket
 *   close and stops decoding.
 * - A runner that dies mid-answer ends the client's stream cleanly: an SSE `error` event for
 *   streams, a 502 envelope when nothing was sent yet, else the connection is closed.
 * - The lease is released exactly once, when the exchange ends in any way.
 */

const agent = new http.Agent({ keepAlive: true, maxSockets: 256, keepAliveMsecs: 1000 });

export interface ForwardOptions {
  lease: Lease;
  path: string;
  body: unknown;
  res: ServerResponse;
  /** Called once when the exchange ends; `outcome` says how. */
  onEnd?: (outcome: 'done' | 'client-gone' | 'upstream-failed', status: number) => void;
}

export function forwardToRunner({ lease, path, body, res, onEnd }: ForwardOptions): void {
  const payload = Buffer.from(JSON.stringify(body));
  const url = new URL(path, lease.url);
  let ended = false;
  let status = 0;
  const finish = (outcome: 'done' | 'client-gone' | 'upstream-failed'): void => {
    if (ended) return;
    ended = true;
    lease.release();
    onEnd?.(outcome, status);
  };

  const upstream = http.request(url, {
    method: 'POST',
    agent,
    headers: { 'content-type': 'application/json', 'content-length': payload.length },
  });

  const onClientClose = (): void => {
    if (!res.writableFinished) {
      upstream.destroy();
      finish('client-gone');
    }
  };
  res.once('close', onClientClose);

  upstream.once('response', (up) => {
    status = up.statusCode ?? 502;
    const headers: Record<string, string> = {};
    const ct = up.headers['content-type'];
    if (ct) headers['content-type'] = ct;
    if (ct?.startsWith('text/event-stream')) {
      headers['cache-control'] = 'no-cache';
      headers['x-accel-buffering'] = 'no';
    }
    const len = up.headers['content-length'];
    if (len) headers['content-length'] = len;
    res.writeHead(status, headers);
    res.socket?.setNoDelay(true);
    res.flushHeaders();
    const isStream = ct?.startsWith('text/event-stream') ?? false;

    up.on('data', (chunk: Buffer) => {
      if (!res.write(chunk)) {
        up.pause();
        res.once('drain', () => up.resume());
      }
    });
    up.once('end', () => {
      res.end();
      finish('done');
    });
    // 'aborted' / 'error': the runner died or reset the connection mid-answer.
    const onBroken = (): void => {
      if (ended) return;
      if (isStream && !res.writableEnded && !res.destroyed) {
        const event = {
          error: {
            message: `The runner for "${lease.model}" stopped in the middle of the answer; retry the request.`,
            type: 'server_error',
            param: null,
            code: 'runner_failed',
          },
        };
        res.end(`data: ${JSON.stringify(event)}\n\n`);
      } else {
        res.destroy();
      }
      finish('upstream-failed');
    };
    up.once('aborted', onBroken);
    up.once('error', onBroken);
  });

  upstream.once('error', () => {
    if (ended) return;
    if (!res.headersSent && !res.destroyed) {
      status = 502;
      const body = {
        error: {
          message: `The runner for "${lease.model}" could not be reached; it may have crashed. Retry the request.`,
          type: 'server_error',
          param: null,
          code: 'runner_unreachable',
        },
      };
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    } else if (!res.destroyed) {
      res.destroy();
    }
    finish('upstream-failed');
  });

  // Nagle's algorithm on the agent's socket held the request body back until the runner's delayed
  // ACK (~40 ms per non-streamed request, measured); requests and tokens are small writes.
  upstream.setNoDelay(true);
  upstream.end(payload);
}
