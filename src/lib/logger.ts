import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * The daemon's structured logger (pino: JSON lines, cheap when a level is off).
 * `HEADROOM_LOG_LEVEL` sets the level; defaults to "info", and "silent" in library use.
 */
export function createLogger(
  opts: { level?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  const level = opts.level ?? process.env.HEADROOM_LOG_LEVEL ?? 'info';
  return opts.destination
    ? pino({ level, base: undefined }, opts.destination)
    : pino({ level, base: undefined });
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
