import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import os from 'node:os';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HeadroomError } from '../lib/errors.js';

/**
 * The daemon's front door, in one place (docs/SECURITY.md says what each check stops):
 *
 * 1. Host allowlist: a request whose Host header is not an address of this daemon is refused
 *    with 403 before anything else runs. A DNS-rebinding page reaches 127.0.0.1 under its own
 *    domain name, so its Host is that name; IP literals, `localhost`, `*.localhost`, the bound
 *    address (and, on a wildcard bind, the machine's host name and interface addresses) and the
 *    configured names pass.
 * 2. Origin check: a browser request that says it comes from another origin (the `Origin`
 *    header) is refused unless that origin is configured for CORS. This stops a page the user
 *    visits from driving the API with "simple" requests, which browsers send without a
 *    preflight (a POST with a text/plain body reaches the Ollama routes as JSON).
 * 3. CORS: off unless origins are configured; then preflights of those origins are answered and
 *    their answers carry `Access-Control-Allow-Origin`.
 * 4. API key: when one is set, every route except the dashboard's static files (`/`, `/ui/*`)
 *    and, when configured open, `/metrics` needs `Authorization: Bearer KEY` (or `x-api-key:
 *    KEY`), compared in constant time.
 *
 * All checks run in one `onRequest` hook, before the body is read, so a refused request costs
 * no body parsing.
 */

export interface SecurityOptions {
  /** The API key; undefined: no key (only sensible on a loopback bind). */
  apiKey?: string | undefined;
  /** Host names (or `*`, any) accepted beside the built-in ones. */
  allowedHosts?: readonly string[];
  /** The address the daemon binds. */
  boundHost?: string;
  /** Origins allowed cross-origin (`https://app.example:3000`), or `*`. Empty: CORS off. */
  corsOrigins?: readonly string[];
  /** `/metrics` answers without the key. */
  openMetrics?: boolean;
}

export class UnauthorizedError extends HeadroomError {
  override readonly name = 'UnauthorizedError';
  constructor(message: string) {
    super('invalid_api_key', message, { status: 401 });
  }
}

export class ForbiddenError extends HeadroomError {
  override readonly name = 'ForbiddenError';
  constructor(code: 'forbidden_host' | 'forbidden_origin', message: string) {
    super(code, message, { status: 403 });
  }
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1']);
const WILDCARDS = new Set(['0.0.0.0', '::', '']);

/** True for an address that only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  if (LOOPBACK_NAMES.has(h) || h.endsWith('.localhost')) return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

/**
 * Refuses to bind an address other machines can reach without an API key: anyone on the network
 * could otherwise load models, read logs and run generations.
 */
export function assertSafeBind(host: string, apiKey: string | undefined): void {
  if (isLoopbackHost(host) || apiKey) return;
  throw new HeadroomError(
    'CONFIG_UNSAFE_BIND',
    `refusing to bind ${host} without an API key: anyone who can reach it could drive the daemon. Set one with --api-key, $HEADROOM_API_KEY or security.apiKey in the config (at least 16 characters), or bind loopback (--host 127.0.0.1).`,
  );
}

/**
 * The host name of a Host header (`name:port`, `[v6]:port`, `v6`), lowercased, without a
 * trailing dot; undefined when it is not a well-formed host.
 */
export function hostOf(header: string): string | undefined {
  let h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end < 0) return undefined;
    const rest = h.slice(end + 1);
    if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return undefined;
    h = h.slice(1, end);
    return isIP(h) === 6 ? h : undefined;
  }
  if (isIP(h) === 6) return h;
  const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(h);
  if (!m) return undefined;
  h = m[1]!.replace(/\.$/, '');
  return /^[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?$/.test(h) ? h : undefined;
}

/** The names a Host header may carry for a daemon bound to `boundHost`. */
export function allowedHostNames(
  boundHost: string,
  configured: readonly string[],
): { any: boolean; names: Set<string> } {
  const names = new Set<string>(LOOPBACK_NAMES);
  const bound = hostOf(boundHost) ?? boundHost.toLowerCase();
  names.add(bound);
  if (WILDCARDS.has(bound)) {
    names.add(os.hostname().toLowerCase());
    for (const addrs of Object.values(os.networkInterfaces()))
      for (const a of addrs ?? []) names.add(a.address.toLowerCase());
  }
  let any = false;
  for (const c of configured) {
    if (c === '*') any = true;
    else names.add(hostOf(c) ?? c.toLowerCase());
  }
  return { any, names };
}

/**
 * Whether a Host header may reach this daemon. IP literals always pass: a rebinding page's
 * requests carry its own domain name, never an address.
 */
export function hostAllowed(
  header: string | undefined,
  allowed: { any: boolean; names: Set<string> },
): boolean {
  if (allowed.any) return true;
  if (header === undefined) return false;
  const h = hostOf(header);
  if (h === undefined) return false;
  return allowed.names.has(h) || isIP(h) !== 0 || h.endsWith('.localhost');
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * The key a request presents: `Authorization: Bearer KEY`, else `x-api-key: KEY`; undefined when
 * neither is there.
 */
export function presentedKey(headers: FastifyRequest['headers']): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(auth);
    if (m) return m[1];
  }
  const x = headers['x-api-key'];
  return typeof x === 'string' && x !== '' ? x.trim() : undefined;
}

/**
 * Compares a presented key with the expected one in constant time: both are hashed first, so
 * neither the content nor the length of the key leaks through timing.
 */
export function keyMatches(presented: string | undefined, expected: string): boolean {
  const a = digest(presented ?? '');
  const b = digest(expected);
  return timingSafeEqual(a, b) && presented !== undefined;
}

/** Paths served without a key: the dashboard's page and assets (they carry no data). */
function isPublicPath(path: string, openMetrics: boolean): boolean {
  if (path === '/' || path === '/ui' || path.startsWith('/ui/')) return true;
  return openMetrics && path === '/metrics';
}

/** The origin of an Origin header's value (`scheme://host[:port]`), lowercased. */
function normaliseOrigin(o: string): string {
  return o.trim().toLowerCase().replace(/\/+$/, '');
}

/** True when `origin` is the same origin as the request's Host (the dashboard's own page). */
function sameOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  try {
    const u = new URL(origin);
    return u.host.toLowerCase() === host.trim().toLowerCase();
  } catch {
    return false;
  }
}

const CORS_HEADERS = {
  'access-control-allow-methods': 'GET, POST, PUT, DELETE, OPTIONS',
  'access-control-allow-headers': 'authorization, content-type, x-api-key',
  'access-control-expose-headers': 'retry-after, x-headroom-context-dropped-messages',
  'access-control-max-age': '600',
};

/** Registers the checks on the app; must run before routes are added. */
export function registerSecurity(app: FastifyInstance, opts: SecurityOptions): void {
  const hosts = allowedHostNames(opts.boundHost ?? '127.0.0.1', opts.allowedHosts ?? []);
  const origins = new Set((opts.corsOrigins ?? []).map(normaliseOrigin));
  const anyOrigin = origins.has('*');
  const key = opts.apiKey !== undefined && opts.apiKey !== '' ? opts.apiKey : undefined;
  const openMetrics = opts.openMetrics ?? false;

  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    const host = req.headers.host;
    if (!hostAllowed(host, hosts)) {
      throw new ForbiddenError(
        'forbidden_host',
        `Host "${String(host ?? '(none)').slice(0, 100)}" is not an address of this daemon. Use http://127.0.0.1:PORT, or add the name to security.allowedHosts in the config.`,
      );
    }
    const origin = req.headers.origin;
    let corsAllowed = false;
    if (origin !== undefined) {
      const o = normaliseOrigin(origin);
      corsAllowed = anyOrigin || origins.has(o);
      if (!corsAllowed && !sameOrigin(o, host)) {
        throw new ForbiddenError(
          'forbidden_origin',
          `Cross-origin requests from ${origin.slice(0, 100)} are refused. To let a web page at that origin call headroom, add it to security.corsOrigins in the config.`,
        );
      }
      if (corsAllowed) {
        void reply.header('access-control-allow-origin', anyOrigin ? '*' : origin);
        void reply.header('vary', 'Origin');
        for (const [k, v] of Object.entries(CORS_HEADERS)) void reply.header(k, v);
      }
    }
    // A preflight carries no credentials by design; it only tells the browser what is allowed.
    if (req.method === 'OPTIONS' && corsAllowed) {
      return reply.code(204).send();
    }
    if (key === undefined) return;
    const path = req.url.split('?')[0] ?? '';
    if (isPublicPath(path, openMetrics)) return;
    const presented = presentedKey(req.headers);
    if (!keyMatches(presented, key)) {
      void reply.header('www-authenticate', 'Bearer realm="headroom"');
      throw new UnauthorizedError(
        presented === undefined
          ? 'This daemon needs an API key: send "Authorization: Bearer KEY" (or "x-api-key: KEY"); the CLI reads it from $HEADROOM_API_KEY.'
          : 'The API key is wrong. Send the key the daemon was started with (--api-key, $HEADROOM_API_KEY or security.apiKey).',
      );
    }
  });
}
