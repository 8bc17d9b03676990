import { isErrorCode } from '../lib/error-codes.js';
import { HeadroomError } from '../lib/errors.js';
import { DaemonUnreachableError } from './exit.js';

/** The daemon's URL: --url, else $HEADROOM_URL, else the default address. */
export function daemonUrl(flag: string | undefined): string {
  return flag ?? process.env.HEADROOM_URL ?? 'http://127.0.0.1:8642';
}

/**
 * Opens a streamed GET (a followed log): resolves with the response once the daemon answers
 * 2xx; errors as callDaemon's.
 */
export async function streamDaemon(
  base: string,
  path: string,
  signal: AbortSignal,
): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(new URL(path, base), {
      signal,
      headers: authorization(),
    });
  } catch (err) {
    if (signal.aborted) throw err;
    throw unreachable(base, err);
  }
  if (!res.ok) throw errorOf(res, await res.text());
  return res;
}

function unreachable(base: string, err: unknown): DaemonUnreachableError {
  return new DaemonUnreachableError(
    `cannot reach the daemon at ${base} (${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : String(err)}); start it with "headroom serve" or pass --url.`,
  );
}

function errorOf(res: Response, text: string): HeadroomError {
  let message = text;
  let code: unknown;
  try {
    const parsed = JSON.parse(text) as { error?: { message?: string; code?: string } };
    message = parsed.error?.message ?? text;
    code = parsed.error?.code;
  } catch {
    // not JSON: keep the text
  }
  return new HeadroomError(isErrorCode(code) ? code : 'CLI_DAEMON_ERROR', message, {
    status: res.status,
    ...(code !== undefined ? { details: { daemonCode: code } } : {}),
  });
}

/** Calls the daemon's API; errors come back as HeadroomErrors carrying the daemon's message. */
export async function callDaemon<T>(
  base: string,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<T> {
  let res: Response;
  try {
    res = await fetch(new URL(path, base), {
      method,
      headers: {
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...authorization(),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw unreachable(base, err);
  }
  const text = await res.text();
  if (!res.ok) throw errorOf(res, text);
  const ct = res.headers.get('content-type') ?? '';
  return (ct.includes('json') ? JSON.parse(text) : text) as T;
}

/** The key the daemon asks for, from $HEADROOM_API_KEY. */
function authorization(): Record<string, string> {
  const key = process.env.HEADROOM_API_KEY;
  return key ? { authorization: `Bearer ${key}` } : {};
}
