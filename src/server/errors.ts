import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { envelopeOf, type ErrorEnvelope } from '../lib/envelope.js';
import type { ErrorCode } from '../lib/error-codes.js';
import { HeadroomError, isHeadroomError } from '../lib/errors.js';
import { isAbortError } from '../lib/abort.js';
import type { Logger } from '../lib/logger.js';

export class BadRequestError extends HeadroomError {
  override readonly name = 'BadRequestError';
  constructor(message: string, param: string | null = null, code: ErrorCode = 'invalid_request') {
    super(code, message, { status: 400, details: { param } });
  }
}

export class NotFoundError extends HeadroomError {
  override readonly name = 'NotFoundError';
  constructor(message: string, code: ErrorCode) {
    super(code, message, { status: 404 });
  }
}

export type { ErrorEnvelope };

/** Fastify's own body errors, as headroom's codes and messages a person can act on. */
const FASTIFY_ERRORS: Record<
  string,
  { code: ErrorCode; message: (fe: Partial<FastifyError>) => string }
> = {
  FST_ERR_CTP_BODY_TOO_LARGE: {
    code: 'body_too_large',
    message: () =>
      'The request body is larger than the limit (limits.maxBodyBytes); send a smaller body.',
  },
  FST_ERR_CTP_INVALID_JSON_BODY: {
    code: 'invalid_json',
    message: (fe) => `The request body is not valid JSON: ${fe.message ?? ''}`,
  },
  FST_ERR_CTP_EMPTY_JSON_BODY: {
    code: 'invalid_request',
    message: () => 'The request body is empty; send a JSON object.',
  },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    code: 'invalid_request',
    message: () => 'Unsupported Content-Type; send application/json.',
  },
};

/**
 * Converts any thrown value into (status, envelope): fastify's 4xx errors become headroom's
 * codes first, then lib/envelope.ts renders everything.
 */
export function toEnvelope(err: unknown): {
  status: number;
  body: ErrorEnvelope;
  retryAfter?: number;
} {
  if (isHeadroomError(err)) return envelopeOf(err);
  const fe = err as Partial<FastifyError>;
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const known = fe.code !== undefined ? FASTIFY_ERRORS[fe.code] : undefined;
    return envelopeOf(
      new HeadroomError(
        known?.code ?? 'invalid_request',
        known?.message(fe) ?? fe.message ?? 'Bad request',
        { status: fe.statusCode, details: { param: null } },
      ),
    );
  }
  return envelopeOf(err);
}

export function makeErrorHandler(log: Logger) {
  return function errorHandler(err: unknown, req: FastifyRequest, reply: FastifyReply): void {
    // The client left while its request waited or loaded: nobody reads the answer, and it is
    // not the daemon's failure (no 500 in the log for every impatient client).
    if (isAbortError(err) && (req.raw.destroyed || reply.raw.destroyed)) {
      log.debug({ url: req.url }, 'the client went away');
      void reply.code(499).send();
      return;
    }
    const { status, body, retryAfter } = toEnvelope(err);
    if (status >= 500) log.error({ err, url: req.url }, 'request failed');
    else log.debug({ url: req.url, code: body.error.code }, body.error.message);
    if (retryAfter !== undefined) void reply.header('retry-after', String(retryAfter));
    void reply.code(status).send(body);
  };
}

/**
 * A request node's HTTP parser rejects before any route sees it (a malformed request line or
 * header, headers too large, a body sent too slowly): answered with the envelope, then the
 * connection is closed, as node does.
 */
export function handleClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  let status = 400;
  let message = `The HTTP request is malformed (${err.code ?? err.message}); check the request line, headers and body framing.`;
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    status = 408;
    message = 'The request took too long to arrive (over 60 s for its headers and body).';
  } else if (err.code === 'HPE_HEADER_OVERFLOW') {
    status = 431;
    message = 'The request headers are too large (over 16 KiB); send fewer or shorter headers.';
  }
  const body = JSON.stringify(
    envelopeOf(new HeadroomError('invalid_request', message, { status, details: { param: null } }))
      .body,
  );
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}
