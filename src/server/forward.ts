import http from 'node:http';
import type { ServerResponse } from 'node:http';
import type { RequestOutcome, RequestSpan } from '../metrics/requests.js';
import type { ServingMetrics } from '../metrics/serving.js';
import { StreamObserver } from '../metrics/stream-observer.js';
import type { Lease } from '../scheduler/model-manager.js';
import type { TranslatedError } from '../engines/engine.js';
import { envelopeOf, type ErrorEnvelope } from '../lib/envelope.js';
import { HeadroomError } from '../lib/errors.js';
import { postToRunner } from './runner-request.js';

/**
 * Forwards one request to a runner and streams its answer back to the client.
 *
 * Contracts:
 * - Backpressure end to end: each chunk from the runner is written to the client's socket; when
 *   that write reports a full buffer we stop reading from the runner until the client drains it,
 *   so the runner's socket fills, its writes wait, and its decoding waits (the runner awaits each
 *   write). The daemon holds at most the client socket's high-water mark plus one chunk (and at
 *   most one incomplete SSE event in the observer).
 * - A client that goes away destroys the upstream request at once; the runner sees its socket
 *   close and stops decoding (within one token) or prompt evaluation (within one chunk).
 * - A runner that dies mid-answer ends the client's stream cleanly: an SSE `error` event for
 *   streams, a 502 envelope when nothing was sent yet, else the connection is closed.
 * - The lease is released exactly once, when the exchange ends in any way; the span (metrics) is
 *   ended right after, and every listener this function added is removed then.
 * - The hot path per chunk is one observer push (a few byte compares, see StreamObserver) and
 *   one write: nothing is parsed or copied unless it carries the usage.
 * - With a `transform` (another API's shape, e.g. Ollama's NDJSON), every contract above holds
 *   the same way; the transform only rewrites bytes. The status and headers then leave with the
 *   first bytes the transform gives out, so an answer it holds back whole can still fail with an
 *   error status.
 */

const agent = new http.Agent({ keepAlive: true, maxSockets: 256, keepAliveMsecs: 1000 });

export type ForwardOutcome = 'done' | 'client-gone' | 'upstream-failed' | 'cancelled';

export interface ForwardOptions {
  lease: Lease;
  path: string;
  body: unknown;
  res: ServerResponse;
  /** Measures the request (TTFT, tokens, outcome); ended once when the exchange ends. */
  span?: RequestSpan;
  /** Counts the stream as active and its buffered bytes while it lasts. */
  metrics?: Pick<ServingMetrics, 'trackStream'>;
  /** Remove the usage event from the stream (the daemon asked for it; the client did not). */
  stripUsage?: boolean;
  /** Extra response headers (e.g. what the context policy did). */
  headers?: Record<string, string>;
  /**
   * The runner refused the connection or dropped it before any answer (LOST_CONNECTION), and
   * nothing was sent to the client. The lease is released and the span left open; the caller
   * answers (or tries another runner). Without it the client gets 502 runner_unreachable.
   */
  onLost?: () => void;
  /** Called once when the exchange ends; `outcome` says how. */
  onEnd?: (outcome: ForwardOutcome, status: number) => void;
  /**
   * Rewrites the runner's JSON error answers into headroom's error codes (the engine's
   * translateError), so clients see one set of errors whatever the engine.
   */
  translateError?: (status: number, body: unknown) => TranslatedError | undefined;
  /** Ask for a new connection for a streamed request (the engine's keepAliveAfterStream is false). */
  closeAfterStream?: boolean;
  /**
   * Rewrites the answer into another API's shape. Without it the runner's bytes pass through as
   * they are (the OpenAI routes' hot path).
   */
  transform?: AnswerTransform;
}

/**
 * Rewrites a runner's (OpenAI-shaped) answer for the client, one request at a time. It sees the
 * runner's bytes after the StreamObserver: for an event stream, whole events (the observer carries
 * an incomplete one to the next chunk) except past its carry limit. Pure: it writes nothing.
 */
export interface AnswerTransform {
  /** The content type of a successful answer. */
  readonly contentType: string;
  /** The runner's next bytes → the client's next bytes ('' holds them back). */
  push(chunk: Buffer): string;
  /**
   * The runner's answer ended: the client's last bytes, and the status to answer with when the
   * transform found the answer failed and has sent nothing yet.
   */
  end(): { body: string; status?: number };
  /** An error for the client: a whole answer (nothing sent yet), or the stream's last bytes. */
  error(envelope: ErrorEnvelope, midStream: boolean): string;
}

/**
 * How a connection to a runner that is dying ends before it answers: its port closed (refused), or
 * the kernel accepted the connection on the listening socket and reset it when the process died
 * (a hung or stopped process still accepts).
 */
const LOST_CONNECTION = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE']);

/** The runner's connection broke in the middle of its answer. */
export function runnerFailedError(model: string): HeadroomError {
  return new HeadroomError(
    'runner_failed',
    `The runner for "${model}" stopped in the middle of the answer; retry the request.`,
    { status: 502 },
  );
}

/** The runner could not be reached (its request failed before any answer). */
export function runnerUnreachableError(model: string): HeadroomError {
  return new HeadroomError(
    'runner_unreachable',
    `The runner for "${model}" could not be reached; it may have crashed. Retry the request.`,
    { status: 502 },
  );
}

/** The most bytes of a runner's error answer read for translation; a longer one passes as is. */
const ERROR_BODY_CAP = 64 * 1024;

const OUTCOME: Record<ForwardOutcome, RequestOutcome> = {
  done: 'done',
  'client-gone': 'cancelled',
  'upstream-failed': 'error',
  cancelled: 'cancelled',
};

export function forwardToRunner(opts: ForwardOptions): void {
  const { lease, path, body, res, span, onEnd } = opts;
  const payload = Buffer.from(JSON.stringify(body));
  const url = new URL(path, lease.url);
  let ended = false;
  let status = 0;
  let observer: StreamObserver | undefined;
  const untrack = opts.metrics?.trackStream(res);
  /** Ends this exchange's hold: the lease and every listener; false when already ended. */
  const detach = (): boolean => {
    if (ended) return false;
    ended = true;
    lease.release();
    lease.signal.removeEventListener('abort', onCancelled);
    untrack?.();
    res.off('close', onClientClose);
    res.off('drain', onDrain);
    return true;
  };
  const finish = (outcome: ForwardOutcome): void => {
    if (!detach()) return;
    if (span) {
      if (observer?.firstAt !== undefined) span.firstByte(observer.firstAt);
      const failed = outcome === 'done' && status >= 400;
      span.end({
        outcome: failed ? 'error' : OUTCOME[outcome],
        status: outcome === 'client-gone' && !res.headersSent ? 0 : status,
        ...(failed || outcome === 'upstream-failed'
          ? {
              error:
                observer?.errorCode ??
                (outcome === 'upstream-failed' ? 'runner_failed' : `http_${status}`),
            }
          : {}),
        ...(observer?.usage ? { usage: observer.usage } : {}),
        ...(observer ? { events: observer.events } : {}),
      });
    }
    onEnd?.(outcome, status);
  };

  const transform = opts.transform;
  const sendError = (code: number, body: ErrorEnvelope, retryAfter?: number): void =>
    writeErrorAnswer(res, { status: code, body, retryAfter }, transform);
  const closeStream =
    opts.closeAfterStream === true && (body as { stream?: unknown } | null)?.stream === true;

  function onClientClose(): void {
    if (!res.writableFinished) {
      upstream.destroy();
      // A client that closes once it has the final event (the openai client does, and llama-server
      // ends its chunked answer a moment after it) got the whole answer.
      finish(observer?.done === true ? 'done' : 'client-gone');
    }
  }
  function onDrain(): void {
    upstreamResponse?.resume();
  }
  let upstreamResponse: http.IncomingMessage | undefined;
  /** Whether the runner answered with an event stream (set on its response). */
  let streaming = false;
  res.once('close', onClientClose);
  res.on('drain', onDrain);

  // headroom itself cancelled the request (critical memory pressure): stop the runner's work and
  // end the client's answer with the reason, as an envelope or, mid-stream, an SSE error event.
  function onCancelled(): void {
    if (ended) return;
    const { status: code, body, retryAfter } = envelopeOf(lease.signal.reason);
    upstream.destroy();
    if (!res.headersSent && !res.destroyed) {
      status = code;
      sendError(code, body, retryAfter);
    } else if (!res.writableEnded && !res.destroyed && (transform || streaming)) {
      res.end(transform ? transform.error(body, true) : `data: ${JSON.stringify(body)}\n\n`);
    } else if (!res.destroyed) {
      res.destroy();
    }
    finish('cancelled');
  }
  lease.signal.addEventListener('abort', onCancelled, { once: true });

  function onResponse(up: http.IncomingMessage): void {
    upstreamResponse = up;
    status = up.statusCode ?? 502;
    const headers: Record<string, string> = { ...opts.headers };
    const ct = up.headers['content-type'];
    if (status >= 400 && (transform || (opts.translateError && ct?.includes('application/json')))) {
      translateErrorAnswer(up, headers);
      return;
    }
    if (transform) {
      transformAnswer(up, transform, headers, ct?.startsWith('text/event-stream') ?? false);
      return;
    }
    if (ct) headers['content-type'] = ct;
    const isStream = ct?.startsWith('text/event-stream') ?? false;
    streaming = isStream;
    if (isStream) {
      headers['cache-control'] = 'no-cache';
      headers['x-accel-buffering'] = 'no';
    }
    const strip = isStream && opts.stripUsage === true;
    // Stripping changes the length; the runner streams SSE without one anyway.
    const len = up.headers['content-length'];
    if (len && !strip) headers['content-length'] = len;
    res.writeHead(status, headers);
    // Real sockets only: fastify's inject() gives a socket-like object without setNoDelay.
    if (typeof res.socket?.setNoDelay === 'function') res.socket.setNoDelay(true);
    // The headers leave with the first chunk (one segment, one wake-up of the client on the
    // path to the first token); only a runner that sends its headers well before any body
    // gets them flushed on their own, once this turn of the event loop has read what came.
    setImmediate(() => {
      if (!res.headersSent && !res.destroyed) res.flushHeaders();
    });
    const obs = new StreamObserver({ sse: isStream, stripUsage: strip });
    observer = obs;

    up.on('data', (chunk: Buffer) => {
      const out = obs.push(chunk);
      if (out.length > 0 && !res.write(out)) up.pause();
    });
    up.once('end', () => {
      const rest = obs.end();
      if (rest.length > 0) res.end(rest);
      else res.end();
      finish('done');
    });
    // 'aborted' / 'error': the runner died or reset the connection mid-answer.
    const onBroken = (): void => {
      if (ended) return;
      if (isStream && !res.writableEnded && !res.destroyed) {
        const { body: event } = envelopeOf(runnerFailedError(lease.model));
        res.end(`data: ${JSON.stringify(event)}\n\n`);
      } else {
        res.destroy();
      }
      finish('upstream-failed');
    };
    up.once('aborted', onBroken);
    up.on('error', onBroken);
  }

  /** Sends the runner's answer through the transform; headers leave with its first bytes. */
  function transformAnswer(
    up: http.IncomingMessage,
    t: AnswerTransform,
    extra: Record<string, string>,
    isStream: boolean,
  ): void {
    const headers = { ...extra, 'content-type': t.contentType };
    const obs = new StreamObserver({ sse: isStream, stripUsage: false });
    observer = obs;
    const write = (out: string): boolean => {
      if (!res.headersSent) {
        res.writeHead(status, headers);
        if (typeof res.socket?.setNoDelay === 'function') res.socket.setNoDelay(true);
      }
      return res.write(out);
    };
    up.on('data', (chunk: Buffer) => {
      const out = t.push(obs.push(chunk));
      if (out.length > 0 && !write(out)) up.pause();
    });
    up.once('end', () => {
      const rest = t.push(obs.end());
      const last = t.end();
      if (!res.headersSent) {
        if (last.status !== undefined) status = last.status;
        res.writeHead(status, headers);
      }
      res.end(rest + last.body);
      finish('done');
    });
    const onBroken = (): void => {
      if (ended) return;
      const { status: code, body } = envelopeOf(runnerFailedError(lease.model));
      if (!res.headersSent && !res.destroyed) {
        status = code;
        sendError(code, body);
      } else if (!res.writableEnded && !res.destroyed) {
        res.end(t.error(body, true));
      } else if (!res.destroyed) {
        res.destroy();
      }
      finish('upstream-failed');
    };
    up.once('aborted', onBroken);
    up.on('error', onBroken);
  }

  /**
   * Reads a (small) error answer whole, translates it, and sends the envelope or the original.
   * With a transform, the answer is always rendered through it: the translated envelope, else the
   * runner's own envelope, else one that says what status the runner answered.
   */
  function translateErrorAnswer(up: http.IncomingMessage, headers: Record<string, string>): void {
    const chunks: Buffer[] = [];
    let size = 0;
    let passThrough = false;
    up.on('data', (chunk: Buffer) => {
      if (passThrough) {
        res.write(chunk);
        return;
      }
      size += chunk.length;
      if (transform && size > ERROR_BODY_CAP) return;
      chunks.push(chunk);
      if (size > ERROR_BODY_CAP) {
        // Too long to be an error envelope worth translating: send it on as it is.
        passThrough = true;
        res.writeHead(status, { ...headers, 'content-type': 'application/json' });
        res.write(Buffer.concat(chunks));
      }
    });
    up.once('end', () => {
      if (passThrough) {
        res.end();
        finish('done');
        return;
      }
      let out = Buffer.concat(chunks);
      let parsed: unknown;
      try {
        parsed = JSON.parse(out.toString('utf8'));
      } catch {
        parsed = undefined;
      }
      const t = parsed === undefined ? undefined : opts.translateError?.(status, parsed);
      let envelope: ErrorEnvelope | undefined;
      if (t) {
        const e = envelopeOf(
          new HeadroomError(t.code, t.message, {
            status: t.status,
            ...(t.details ? { details: t.details } : {}),
          }),
        );
        status = e.status;
        envelope = e.body;
      } else if (transform) {
        envelope = isEnvelope(parsed)
          ? parsed
          : envelopeOf(
              new HeadroomError('runner_failed', `The runner answered ${status}.`, { status }),
            ).body;
      }
      if (envelope) out = Buffer.from(JSON.stringify(envelope));
      const obs = new StreamObserver({ sse: false, stripUsage: false });
      observer = obs;
      let body = Buffer.concat([obs.push(out), obs.end()]);
      if (transform && envelope) body = Buffer.from(transform.error(envelope, false));
      res.writeHead(status, {
        ...headers,
        'content-type': 'application/json',
        'content-length': String(body.length),
      });
      res.end(body);
      finish('done');
    });
    const onBroken = (): void => {
      if (ended) return;
      res.destroy();
      finish('upstream-failed');
    };
    up.once('aborted', onBroken);
    up.on('error', onBroken);
  }

  function onUpstreamError(err: NodeJS.ErrnoException): void {
    if (ended) return;
    const { onLost } = opts;
    if (
      onLost &&
      upstreamResponse === undefined &&
      !res.headersSent &&
      !res.destroyed &&
      LOST_CONNECTION.has(err.code ?? '')
    ) {
      // The runner answered nothing and nothing was sent: the caller may try another runner.
      detach();
      onLost();
      return;
    }
    if (!res.headersSent && !res.destroyed) {
      const { status: code, body } = envelopeOf(runnerUnreachableError(lease.model));
      status = code;
      sendError(code, body);
    } else if (!res.destroyed) {
      res.destroy();
    }
    finish('upstream-failed');
  }

  const upstream = postToRunner({
    url,
    payload,
    agent,
    ...(closeStream ? { headers: { connection: 'close' } } : {}),
    onResponse,
    onError: onUpstreamError,
  });
}

/**
 * Answers with `err` rendered as a whole error answer, in the transform's shape when there is
 * one; a response that has begun is closed instead. For a request forwardToRunner handed back.
 */
export function answerError(res: ServerResponse, err: unknown, transform?: AnswerTransform): void {
  if (res.headersSent || res.destroyed) {
    if (!res.destroyed) res.destroy();
    return;
  }
  writeErrorAnswer(res, envelopeOf(err), transform);
}

/** Sends a whole error answer (nothing was sent yet). */
function writeErrorAnswer(
  res: ServerResponse,
  e: { status: number; body: ErrorEnvelope; retryAfter?: number | undefined },
  transform: AnswerTransform | undefined,
): void {
  res.writeHead(e.status, {
    'content-type': 'application/json',
    ...(e.retryAfter !== undefined ? { 'retry-after': String(e.retryAfter) } : {}),
  });
  res.end(transform ? transform.error(e.body, false) : JSON.stringify(e.body));
}

/** Whether a runner's error answer is already an OpenAI error envelope. */
function isEnvelope(v: unknown): v is ErrorEnvelope {
  const e = (v as { error?: { message?: unknown } } | null)?.error;
  return typeof e === 'object' && e !== null && typeof e.message === 'string';
}
