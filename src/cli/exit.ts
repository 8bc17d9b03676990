import { isHeadroomError } from '../lib/errors.js';

/** Exit codes of the CLI, mapped from error codes in this one place. */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  notFound: 3,
  daemonUnreachable: 4,
  badModelFile: 5,
  refused: 6,
} as const;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export class DaemonUnreachableError extends Error {
  override readonly name = 'DaemonUnreachableError';
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError) return ExitCode.usage;
  if (err instanceof DaemonUnreachableError) return ExitCode.daemonUnreachable;
  if (isHeadroomError(err)) {
    if (err.code.startsWith('GGUF_')) return ExitCode.badModelFile;
    if (err.code === 'CONFIG_INVALID') return ExitCode.usage;
    if (err.status === 404) return ExitCode.notFound;
    if (err.status === 503 || err.status === 429) return ExitCode.refused;
  }
  return ExitCode.failure;
}

/** One line for a person: what happened (and, in the message, what to do). */
export function renderCliError(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return `headroom: ${msg}`;
}
