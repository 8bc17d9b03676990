import { ERROR_CODES, type ErrorCode } from './error-codes.js';

/**
 * Base error of headroom. Every error a user can see is a HeadroomError with a stable `code`
 * from the registry (error-codes.ts); it is rendered once for HTTP (lib/envelope.ts, the OpenAI
 * envelope) and once for the CLI (cli/exit.ts, the registry's exit codes). The message says what
 * happened and what to do.
 */
export class HeadroomError extends Error {
  override readonly name: string = 'HeadroomError';
  readonly code: ErrorCode;
  /** HTTP status to render with. Defaults to the code's status in the registry. */
  readonly status: number;
  /** Extra fields rendered beside the message (e.g. `param`, `known`). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    message: string,
    options: { status?: number; details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status ?? ERROR_CODES[code].status;
    this.details = options.details ?? {};
  }
}

export function isHeadroomError(err: unknown): err is HeadroomError {
  return err instanceof HeadroomError;
}

/** A short one-line description of any thrown value. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
