import { pino, type Logger } from 'pino';
import { PinoPretty } from 'pino-pretty';

export type { Logger };

/** json: one JSON object a line; pretty: aligned human-readable lines; auto: pretty on a TTY. */
export type LogFormat = 'json' | 'pretty' | 'auto';

/**
 * Whether logs come out human-readable: `pretty`, or `auto` with the destination a terminal.
 * Piped or redirected output stays JSON, so log shippers and `jq` keep working.
 */
export function prettyLogs(format: LogFormat, isTTY: boolean | undefined): boolean {
  return format === 'pretty' || (format === 'auto' && isTTY === true);
}

/**
 * The daemon's structured logger (pino: JSON lines, cheap when a level is off).
 * `HEADROOM_LOG_LEVEL` sets the level; defaults to "info", and "silent" in library use.
 * `format` (or `HEADROOM_LOG_FORMAT`, which wins) picks JSON or human-readable lines; defaults
 * to JSON. Pretty lines are written synchronously to the same destination (no worker thread).
 */
export function createLogger(
  opts: { level?: string; destination?: NodeJS.WritableStream; format?: LogFormat } = {},
): Logger {
  const level = opts.level ?? process.env.HEADROOM_LOG_LEVEL ?? 'info';
  const env = process.env.HEADROOM_LOG_FORMAT;
  const format: LogFormat =
    env === 'json' || env === 'pretty' || env === 'auto' ? env : (opts.format ?? 'json');
  const out = opts.destination ?? process.stdout;
  if (prettyLogs(format, (out as { isTTY?: boolean }).isTTY)) {
    const stream = PinoPretty({
      destination: out,
      sync: true,
      colorize: (out as { isTTY?: boolean }).isTTY === true && !process.env.NO_COLOR,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname',
      singleLine: true,
    });
    return pino({ level, base: undefined }, stream);
  }
  return opts.destination
    ? pino({ level, base: undefined }, opts.destination)
    : pino({ level, base: undefined });
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
