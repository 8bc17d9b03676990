import { EXIT_CODES, exitCodeOf } from '../lib/error-codes.js';
import { HeadroomError, isHeadroomError } from '../lib/errors.js';

/** Exit codes of the CLI; which error code exits with which is the registry's (lib/error-codes.ts). */
export const ExitCode = EXIT_CODES;

/** A command line headroom cannot run; the message says how to fix it. */
export class UsageError extends HeadroomError {
  override readonly name = 'UsageError';
  constructor(message: string) {
    super('CLI_USAGE', message);
  }
}

export class DaemonUnreachableError extends HeadroomError {
  override readonly name = 'DaemonUnreachableError';
  constructor(message: string) {
    super('CLI_DAEMON_UNREACHABLE', message);
  }
}

export function exitCodeFor(err: unknown): number {
  if (!isHeadroomError(err)) return ExitCode.failure;
  // The daemon answered a code this CLI does not know (a newer daemon): go by its status.
  if (err.code === 'CLI_DAEMON_ERROR') {
    if (err.status === 404) return ExitCode.notFound;
    if (err.status === 503 || err.status === 429) return ExitCode.refused;
  }
  return exitCodeOf(err.code);
}

/** One line for a person: what happened (and, in the message, what to do). */
export function renderCliError(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return `headroom: ${msg}`;
}
