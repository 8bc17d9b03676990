import http from 'node:http';

/** A request to a runner in flight. */
export interface RunnerRequest {
  /** Destroys the request in flight (the runner sees its socket close). */
  destroy(): void;
}

/**
 * POSTs a JSON body to a runner and hands its answer to `onResponse`.
 *
 * A request that fails on a reused keep-alive socket before any answer came (ECONNRESET or
 * EPIPE) is sent once more on a fresh connection. llama-server announces keep-alive but closes
 * the connection after every streamed answer (its chunked content provider ends by returning
 * false, which cpp-httplib treats as a failed write), so the next request the agent puts on that
 * socket can meet the close; the runner never read it. Any other error, a second failure, or an
 * error once the answer has begun goes to `onError` (possibly more than once, as a destroyed
 * request may report more than one error).
 */
export function postToRunner(opts: {
  url: URL;
  payload: Buffer;
  /** Defaults to Node's global agent. */
  agent?: http.Agent;
  /** More request headers (e.g. `connection: close` for an engine that drops kept-alive streams). */
  headers?: Record<string, string>;
  onResponse: (res: http.IncomingMessage) => void;
  onError: (err: Error) => void;
}): RunnerRequest {
  let current: http.ClientRequest;
  let destroyed = false;
  let retried = false;
  const send = (): void => {
    const req = http.request(opts.url, {
      method: 'POST',
      ...(opts.agent ? { agent: opts.agent } : {}),
      headers: {
        ...opts.headers,
        'content-type': 'application/json',
        'content-length': opts.payload.length,
      },
    });
    current = req;
    let answered = false;
    req.once('response', (res) => {
      answered = true;
      opts.onResponse(res);
    });
    // `on`, not `once`: a destroyed request may report more than one error.
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (req !== current) return;
      const closedUnderUs =
        req.reusedSocket && !answered && (err.code === 'ECONNRESET' || err.code === 'EPIPE');
      if (closedUnderUs && !retried && !destroyed) {
        retried = true;
        send();
        return;
      }
      opts.onError(err);
    });
    // Nagle's algorithm would hold the body back until the runner's delayed ACK (~40 ms per
    // non-streamed request, measured); requests and tokens are small writes.
    req.setNoDelay(true);
    req.end(opts.payload);
  };
  send();
  return {
    destroy: () => {
      destroyed = true;
      current.destroy();
    },
  };
}
