import { formatBytes } from '../config/units.js';

/**
 * The progress line of `headroom load` on a terminal: a spinner, the model's state as the daemon
 * reports it (queued, loading with its planned config and footprint), and the time so far,
 * redrawn in place on stderr; replaced by one summary line when the load ends.
 */

export interface LoadStatus {
  state: string;
  queued?: number;
  config?: { contextSize: number; parallel: number; kvCacheKeyType: string; engine?: string };
  predicted?: number | null;
  measured?: number | null;
  loadMs?: number;
}

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;

function planned(s: LoadStatus): string {
  const parts: string[] = [];
  if (s.config)
    parts.push(
      `ctx ${s.config.contextSize}, ${s.config.kvCacheKeyType} KV, ${s.config.parallel} slot(s)${s.config.engine ? ` on ${s.config.engine}` : ''}`,
    );
  if (s.predicted !== null && s.predicted !== undefined)
    parts.push(`planned ${formatBytes(s.predicted)}`);
  return parts.join(' · ');
}

/** One frame of the line while the load runs (`status` undefined before the first answer). */
export function progressLine(
  name: string,
  status: LoadStatus | undefined,
  elapsedMs: number,
  tick: number,
): string {
  const spin = SPINNER[tick % SPINNER.length]!;
  const state =
    status === undefined || status.state === 'unloaded'
      ? 'planning'
      : status.state === 'loading'
        ? 'loading'
        : status.state;
  const detail = status ? planned(status) : '';
  return `${spin} ${state} ${name}${detail ? ` · ${detail}` : ''} · ${seconds(elapsedMs)}`;
}

/** The line left when the load is done. */
export function doneLine(name: string, s: LoadStatus, elapsedMs: number): string {
  const mem =
    s.measured !== null && s.measured !== undefined
      ? ` · RSS ${formatBytes(s.measured)}${s.predicted ? ` (planned ${formatBytes(s.predicted)})` : ''}`
      : s.predicted
        ? ` · planned ${formatBytes(s.predicted)}`
        : '';
  const took = s.loadMs !== undefined ? seconds(s.loadMs) : seconds(elapsedMs);
  return `✓ ${name} ${s.state} in ${took}${mem}`;
}

/**
 * Runs the line until `done()` or `failed()`: redraws every 100 ms, asks `poll` for the model's
 * status every 500 ms (a failed poll keeps the last answer). Timers are unref'd.
 */
export function loadProgress(
  out: NodeJS.WritableStream,
  name: string,
  poll: () => Promise<LoadStatus>,
  now: () => number = Date.now,
): { done: (s: LoadStatus) => void; failed: () => void } {
  const start = now();
  let status: LoadStatus | undefined;
  let tick = 0;
  let ended = false;
  const draw = (): void => {
    if (!ended) out.write(`\r\x1b[2K${progressLine(name, status, now() - start, tick++)}`);
  };
  const spin = setInterval(draw, 100);
  spin.unref();
  let polling = false;
  const ask = setInterval(() => {
    if (polling) return;
    polling = true;
    poll().then(
      (s) => {
        status = s;
        polling = false;
      },
      () => {
        polling = false;
      },
    );
  }, 500);
  ask.unref();
  draw();
  const end = (line: string): void => {
    if (ended) return;
    ended = true;
    clearInterval(spin);
    clearInterval(ask);
    out.write(`\r\x1b[2K${line}`);
  };
  return {
    done: (s) => end(`${doneLine(name, s, now() - start)}\n`),
    failed: () => end(''),
  };
}
