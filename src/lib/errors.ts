/**
 * Base error of headroom. Every error a user can see is a HeadroomError with a stable `code`;
 * it is rendered once for HTTP (server/errors.ts, OpenAI envelope) and once for the CLI
 * (cli/exit.ts, exit codes). The message says what happened and what to do.
 */
export class HeadroomError extends Error {
  override readonly name: string = 'HeadroomError';
  readonly code: string;
  /** HTTP status to render with. Defaults to 500. */
  readonly status: number;
  /** Extra fields rendered beside the message (e.g. `param`, `known`). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: string,
    message: string,
    options: { status?: number; details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status ?? 500;
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
