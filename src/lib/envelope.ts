import { ZodError } from 'zod';
import type { ErrorCode } from './error-codes.js';
import { isHeadroomError } from './errors.js';

/**
 * The OpenAI error envelope: the one shape every HTTP error of the daemon and of the embedded
 * runner is rendered as (the Ollama routes reshape it as `{"error": message}`). `envelopeOf` is
 * the one place a thrown value becomes (status, body); codes come from error-codes.ts.
 */
export interface ErrorEnvelope {
  error: {
    message: string;
    type: string;
    param: string | null;
    code: string | null;
    [k: string]: unknown;
  };
}

export function typeFor(status: number): string {
  if (status === 401 || status === 403) return 'authentication_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return status === 503 ? 'service_unavailable' : 'server_error';
  return 'invalid_request_error';
}

export function envelopeOf(err: unknown): {
  status: number;
  body: ErrorEnvelope;
  retryAfter?: number;
} {
  if (err instanceof ZodError) {
    const issue = err.issues[0];
    const param = issue && issue.path.length > 0 ? issue.path.join('.') : null;
    const message = issue
      ? `Invalid parameter ${param ?? '(body)'}: ${issue.message}`
      : 'Invalid request body';
    return { status: 400, body: body('invalid_parameter', message, 400, param) };
  }
  if (isHeadroomError(err)) {
    const { param, retryAfterSeconds, ...rest } = err.details as {
      param?: string | null;
      retryAfterSeconds?: number;
    };
    return {
      status: err.status,
      body: body(err.code, err.message, err.status, param ?? null, rest),
      ...(retryAfterSeconds !== undefined ? { retryAfter: retryAfterSeconds } : {}),
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { status: 500, body: body('internal_error', `Internal error: ${message}`, 500, null) };
}

/** The one place an envelope's body is built. */
function body(
  code: ErrorCode,
  message: string,
  status: number,
  param: string | null,
  rest: Record<string, unknown> = {},
): ErrorEnvelope {
  return { error: { message, type: typeFor(status), param, code, ...rest } };
}
