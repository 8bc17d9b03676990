import { HeadroomError, describeError } from '../lib/errors.js';
import type { ModelState } from './types.js';

/** The errors the scheduler answers requests with (rendered once, by lib/envelope.ts). */

export class ModelNotFoundError extends HeadroomError {
  override readonly name = 'ModelNotFoundError';
  constructor(name: string, known: readonly string[]) {
    super(
      'model_not_found',
      `The model "${name}" does not exist. Known models: ${known.length > 0 ? known.join(', ') : '(none: add a models directory)'}.`,
      { status: 404, details: { param: 'model', known } },
    );
  }
}

export class ModelLoadError extends HeadroomError {
  override readonly name = 'ModelLoadError';
  constructor(name: string, cause: unknown, retryAfterSeconds?: number) {
    super('model_load_failed', `Loading the model "${name}" failed: ${describeError(cause)}`, {
      status: 503,
      cause,
      ...(retryAfterSeconds !== undefined ? { details: { retryAfterSeconds } } : {}),
    });
  }
}

export class ModelUnavailableError extends HeadroomError {
  override readonly name = 'ModelUnavailableError';
  constructor(name: string, state: ModelState | 'shutting down', retryAfterSeconds = 1) {
    super(
      'model_unavailable',
      `The model "${name}" is ${state} and takes no new requests; retry shortly.`,
      { status: 503, details: { retryAfterSeconds } },
    );
  }
}

/** The queue of a model is full, or a request waited longer than the queue's bound (429). */
export class QueueFullError extends HeadroomError {
  override readonly name = 'QueueFullError';
  constructor(code: 'queue_full' | 'queue_timeout', message: string, retryAfterSeconds: number) {
    super(code, message, { status: 429, details: { retryAfterSeconds } });
  }
}

/** Nothing the optimisation level allows fits the memory budget (503 with the preflight's guidance). */
export class InsufficientMemoryError extends HeadroomError {
  override readonly name = 'InsufficientMemoryError';
  constructor(message: string, guidance: string[], retryAfterSeconds?: number) {
    super(
      'insufficient_memory',
      guidance.length > 0 ? `${message} To fix it: ${guidance.join('; ')}.` : message,
      {
        status: 503,
        details: { guidance, ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}) },
      },
    );
  }
}

/**
 * A load refused because memory pressure is critical: 503 with guidance and Retry-After. The
 * model did not fail: the refusal does not count toward its back-off.
 */
export class PressureRefusedError extends HeadroomError {
  override readonly name = 'PressureRefusedError';
  constructor(model: string, message: string, guidance: string[], retryAfterSeconds: number) {
    super(
      'memory_pressure',
      `Not loading "${model}": ${message}${guidance.length > 0 ? ` To fix it: ${guidance.join('; ')}.` : ''}`,
      { status: 503, details: { guidance, retryAfterSeconds } },
    );
  }
}

/** A model that failed repeatedly is not loaded again for a while (503 + Retry-After). */
export class ModelBackoffError extends HeadroomError {
  override readonly name = 'ModelBackoffError';
  constructor(message: string, retryAfterSeconds: number) {
    super('model_backoff', message, { status: 503, details: { retryAfterSeconds } });
  }
}
