import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ZodError } from 'zod';
import { HeadroomError, isHeadroomError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';

/** The OpenAI error envelope every HTTP error is rendered as. */
export interface ErrorEnvelope {
  error: { message: string; type: string; param: string | null; code: string | null; [k: string]: unknown };
}

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

function typeFor(status: number): string {
  if (status === 401 || status === 403) return 'authentication_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return status === 503 ? 'service_unavailable' : 'server_error';
  return 'invalid_request_error';
}

/** Converts any thrown value into (status, envelope). The one place errors become HTTP. */
export function toEnvelope(err: unknown): { status: number; body: ErrorEnvelope; retryAfter?: number } {
  if (err instanceof ZodError) {
    const issue = err.issues[0];
    const param = issue && issue.path.length > 0 ? issue.path.join('.') : null;
    const message = issue
      ? `Invalid parameter ${param ?? '(body)'}: ${issue.message}`
      : 'Invalid request body';
    return { status: 400, body: { error: { message, type: typeFor(400), param, code: 'invalid_parameter' } } };
  }
  if (isHeadroomError(err)) {
    const { param, retryAfterSeconds, ...rest } = err.details as { param?: string; retryAfterSeconds?: number };
    return {
      status: err.status,
      body: { error: { message: err.message, type: typeFor(err.status), param: param ?? null, code: err.code, ...rest } },
      ...(retryAfterSeconds !== undefined ? { retryAfter: retryAfterSeconds } : {}),
    };
  }
  const fe = err as Partial<FastifyError>;
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const messages: Record<string, string> = {
      FST_ERR_CTP_BODY_TOO_LARGE: 'The request body is larger than the limit (limits.maxBodyBytes); send a smaller body.',
      FST_ERR_CTP_INVALID_JSON_BODY: `The request body is not valid JSON: ${fe.message ?? ''}`,
      FST_ERR_CTP_EMPTY_JSON_BODY: 'The request body is empty; send a JSON object.',
      FST_ERR_CTP_INVALID_MEDIA_TYPE: 'Unsupported Content-Type; send application/json.',
    };
    const message = (fe.code && messages[fe.code]) ?? fe.message ?? 'Bad request';
    const code = fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'body_too_large' : fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? 'invalid_json' : 'invalid_request';
    return { status: fe.statusCode, body: { error: { message, type: typeFor(fe.statusCode), param: null, code } } };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { status: 500, body: { error: { message: `Internal error: ${message}`, type: 'server_error', param: null, code: 'internal_error' } } };
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
