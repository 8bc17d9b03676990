import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ZodError } from 'zod';
import { envelopeOf, typeFor, type ErrorEnvelope } from '../lib/envelope.js';
import { HeadroomError, isHeadroomError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';

export class BadRequestError extends HeadroomError {
  override readonly name = 'BadRequestError';
  constructor(message: string, param: string | null = null, code = 'invalid_request') {
    super(code, message, { status: 400, details: { param } });
  }
}

export class NotFoundError extends HeadroomError {
  override readonly name = 'NotFoundError';
  constructor(message: string, code = 'not_found') {
    super(code, message, { status: 404 });
  }
}

export type { ErrorEnvelope };

/** Converts any thrown value into (status, envelope): envelopeOf plus fastify's body errors. */
export function toEnvelope(err: unknown): {
  status: number;
  body: ErrorEnvelope;
  retryAfter?: number;
} {
  if (err instanceof ZodError || isHeadroomError(err)) return envelopeOf(err);
  const fe = err as Partial<FastifyError>;
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const messages: Record<string, string> = {
      FST_ERR_CTP_BODY_TOO_LARGE:
        'The request body is larger than the limit (limits.maxBodyBytes); send a smaller body.',
      FST_ERR_CTP_INVALID_JSON_BODY: `The request body is not valid JSON: ${fe.message ?? ''}`,
      FST_ERR_CTP_EMPTY_JSON_BODY: 'The request body is empty; send a JSON object.',
      FST_ERR_CTP_INVALID_MEDIA_TYPE: 'Unsupported Content-Type; send application/json.',
    };
    const message = (fe.code && messages[fe.code]) ?? fe.message ?? 'Bad request';
    const code =
      fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
        ? 'body_too_large'
        : fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY'
          ? 'invalid_json'
          : 'invalid_request';
    return {
      status: fe.statusCode,
      body: { error: { message, type: typeFor(fe.statusCode), param: null, code } },
    };
  }
  return envelopeOf(err);
}

export function makeErrorHandler(log: Logger) {
  return function errorHandler(err: unknown, req: FastifyRequest, reply: FastifyReply): void {
    const { status, body, retryAfter } = toEnvelope(err);
    if (status >= 500) log.error({ err, url: req.url }, 'request failed');
    else log.debug({ url: req.url, code: body.error.code }, body.error.message);
    if (retryAfter !== undefined) void reply.header('retry-after', String(retryAfter));
    void reply.code(status).send(body);
  };
}
