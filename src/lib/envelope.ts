import { ZodError } from 'zod';
import { isHeadroomError } from './errors.js';

/**
 * The OpenAI error envelope: the one shape every HTTP error of the daemon and of the embedded
 * runner is rendered as. `envelopeOf` is the one place a thrown value becomes (status, body).
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
    return {
      status: 400,
      body: { error: { message, type: typeFor(400), param, code: 'invalid_parameter' } },
    };
  }
  if (isHeadroomError(err)) {
    const { param, retryAfterSeconds, ...rest } = err.details as {
      param?: string;
      retryAfterSeconds?: number;
    };
    return {
      status: err.status,
      body: {
        error: {
          message: err.message,
          type: typeFor(err.status),
          param: param ?? null,
          code: err.code,
          ...rest,
        },
      },
      ...(retryAfterSeconds !== undefined ? { retryAfter: retryAfterSeconds } : {}),
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  return {
    status: 500,
    body: {
      error: {
        message: `Internal error: ${message}`,
        type: 'server_error',
        param: null,
        code: 'internal_error',
      },
    },
  };
}
