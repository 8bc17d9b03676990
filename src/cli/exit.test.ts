import { describe, expect, it } from 'vitest';
import { ERROR_CODES, EXIT_CODES, type ErrorCode } from '../lib/error-codes.js';
import { HeadroomError } from '../lib/errors.js';
import { DaemonUnreachableError, ExitCode, UsageError, exitCodeFor } from './exit.js';

describe('CLI exit codes', () => {
  it("exits with each error code's exit code from the registry", () => {
    for (const code of Object.keys(ERROR_CODES) as ErrorCode[])
      expect(exitCodeFor(new HeadroomError(code, 'x')), code).toBe(
        EXIT_CODES[ERROR_CODES[code].exit],
      );
  });

  it('keeps the exit codes scripts rely on', () => {
    expect(exitCodeFor(new UsageError('bad flag'))).toBe(ExitCode.usage);
    expect(exitCodeFor(new DaemonUnreachableError('down'))).toBe(ExitCode.daemonUnreachable);
    expect(exitCodeFor(new HeadroomError('GGUF_BAD_MAGIC', 'x'))).toBe(ExitCode.badModelFile);
    expect(exitCodeFor(new HeadroomError('CONFIG_INVALID', 'x'))).toBe(ExitCode.usage);
    expect(exitCodeFor(new HeadroomError('model_not_found', 'x'))).toBe(ExitCode.notFound);
    expect(exitCodeFor(new HeadroomError('queue_full', 'x'))).toBe(ExitCode.refused);
    expect(exitCodeFor(new Error('boom'))).toBe(ExitCode.failure);
  });

  it('goes by the status for a daemon error whose code this CLI does not know', () => {
    const daemon = (status: number) => new HeadroomError('CLI_DAEMON_ERROR', 'x', { status });
    expect(exitCodeFor(daemon(404))).toBe(ExitCode.notFound);
    expect(exitCodeFor(daemon(503))).toBe(ExitCode.refused);
    expect(exitCodeFor(daemon(500))).toBe(ExitCode.failure);
  });
});
