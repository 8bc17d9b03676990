import { describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/logger.js';
import { testServerCore } from '../../test/helpers/server-core.js';
import { createApp } from './app.js';
import {
  allowedHostNames,
  assertSafeBind,
  hostAllowed,
  hostOf,
  keyMatches,
  type SecurityOptions,
} from './security.js';

const KEY = 'k3y-0123456789abcdef';

/** The app in-process over a real manager whose loads fail (no runner is needed here). */
function makeApp(security: SecurityOptions) {
  const core = testServerCore({ models: ['m1'] });
  return createApp(core, { log: silentLogger(), bodyLimit: 1024, security });
}

describe('Host allowlist (DNS rebinding)', () => {
  const app = makeApp({ boundHost: '127.0.0.1', allowedHosts: ['box.lan'] });

  it.each([
    '127.0.0.1:8642',
    'localhost:8642',
    'LOCALHOST',
    '[::1]:8642',
    'app.localhost:3000',
    '10.1.2.3:8642',
    'box.lan:8642',
    'localhost.:8642',
  ])('lets Host %s through', async (host) => {
    const res = await app.inject({ url: '/health', headers: { host } });
    expect(res.statusCode).toBe(200);
  });

  it.each(['evil.example', 'evil.example:8642', '127.0.0.1.evil.example', 'a b', 'x:y:z'])(
    'refuses Host %j with 403 and the envelope',
    async (host) => {
      const res = await app.inject({ url: '/v1/models', headers: { host } });
      expect(res.statusCode).toBe(403);
      expect(res.json().error).toMatchObject({
        code: 'forbidden_host',
        type: 'authentication_error',
      });
      expect(res.json().error.message).toMatch(/security\.allowedHosts/);
    },
  );

  it('parses Host headers strictly', () => {
    expect(hostOf('[::1]:80')).toBe('::1');
    expect(hostOf('[::1')).toBeUndefined();
    expect(hostOf('Example.COM.:1')).toBe('example.com');
    expect(hostOf('a/b')).toBeUndefined();
    expect(hostAllowed(undefined, allowedHostNames('127.0.0.1', []))).toBe(false);
    expect(hostAllowed('anything.example', allowedHostNames('127.0.0.1', ['*']))).toBe(true);
  });

  it('accepts the machine name on a wildcard bind', () => {
    const names = allowedHostNames('0.0.0.0', []);
    expect(names.names.has('0.0.0.0')).toBe(true);
    expect(names.names.size).toBeGreaterThan(4);
  });
});

describe('Origin check and CORS', () => {
  const closed = makeApp({});
  const open = makeApp({ corsOrigins: ['https://app.example:3000'] });

  it('refuses a cross-origin browser request when CORS is off, even a "simple" one', async () => {
    const res = await closed.inject({
      method: 'POST',
      url: '/api/chat',
      headers: { origin: 'https://evil.example', 'content-type': 'text/plain' },
      payload: '{"model":"m1","messages":[]}',
    });
    expect(res.statusCode).toBe(403);
    expect(res.json().error).toMatch(/Cross-origin requests from https:\/\/evil\.example/);
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('lets the same origin through (the dashboard calling its own daemon)', async () => {
    const res = await closed.inject({
      url: '/v1/models',
      headers: { host: '127.0.0.1:8642', origin: 'http://127.0.0.1:8642' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('answers a configured origin with CORS headers and its preflight with 204', async () => {
    const pre = await open.inject({
      method: 'OPTIONS',
      url: '/v1/chat/completions',
      headers: {
        origin: 'https://app.example:3000',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    expect(pre.statusCode).toBe(204);
    expect(pre.headers['access-control-allow-origin']).toBe('https://app.example:3000');
    expect(pre.headers['access-control-allow-headers']).toMatch(/authorization/);
    const get = await open.inject({
      url: '/v1/models',
      headers: { origin: 'https://app.example:3000' },
    });
    expect(get.statusCode).toBe(200);
    expect(get.headers['access-control-allow-origin']).toBe('https://app.example:3000');
    const other = await open.inject({
      url: '/v1/models',
      headers: { origin: 'https://other.example' },
    });
    expect(other.statusCode).toBe(403);
    expect(other.json().error.code).toBe('forbidden_origin');
  });
});

describe('API key', () => {
  const app = makeApp({ apiKey: KEY });
  const metricsOpen = makeApp({ apiKey: KEY, openMetrics: true });

  it.each([
    ['GET', '/v1/models'],
    ['GET', '/health'],
    ['GET', '/admin/models'],
    ['GET', '/admin/logs/m1'],
    ['POST', '/admin/models/m1/load'],
    ['GET', '/api/tags'],
    ['POST', '/api/chat'],
    ['GET', '/metrics'],
    ['GET', '/no/such/route'],
  ] as const)('%s %s without the key is 401', async (method, url) => {
    const res = await app.inject({ method, url });
    expect(res.statusCode).toBe(401);
    expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
    const body = res.json();
    const message = url.startsWith('/api/') ? body.error : body.error.message;
    expect(message).toMatch(/Authorization: Bearer KEY/);
  });

  it('refuses a wrong key, a key of another length and a malformed header', async () => {
    for (const authorization of [
      `Bearer ${KEY}x`,
      `Bearer ${KEY.slice(0, -1)}`,
      'Bearer ',
      `Basic ${KEY}`,
      KEY,
      `Bearer ${KEY} extra`,
    ]) {
      const res = await app.inject({ url: '/v1/models', headers: { authorization } });
      expect(res.statusCode, authorization).toBe(401);
      expect(res.json().error.code).toBe('invalid_api_key');
    }
  });

  it('accepts the key as Bearer token or x-api-key', async () => {
    for (const headers of [
      { authorization: `Bearer ${KEY}` },
      { authorization: `bearer  ${KEY}` },
      { 'x-api-key': KEY },
    ]) {
      expect((await app.inject({ url: '/v1/models', headers })).statusCode).toBe(200);
    }
  });

  it('serves the dashboard paths without the key, /metrics only when configured open', async () => {
    // The page and its files carry no data: served without the key (the page then asks for it).
    expect((await app.inject({ url: '/' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/ui/app.js' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/ui/nope.js' })).statusCode).toBe(404);
    expect((await app.inject({ url: '/uiX' })).statusCode).toBe(401);
    expect((await metricsOpen.inject({ url: '/metrics' })).statusCode).toBe(200);
    expect((await metricsOpen.inject({ url: '/v1/models' })).statusCode).toBe(401);
  });

  it('compares keys whatever their lengths', () => {
    expect(keyMatches(KEY, KEY)).toBe(true);
    expect(keyMatches(undefined, KEY)).toBe(false);
    expect(keyMatches('', KEY)).toBe(false);
    expect(keyMatches(KEY + KEY, KEY)).toBe(false);
  });
});

describe('bind check', () => {
  it('refuses a non-loopback bind without a key, naming the option', () => {
    expect(() => assertSafeBind('0.0.0.0', undefined)).toThrow(/--api-key/);
    expect(() => assertSafeBind('192.168.1.2', undefined)).toThrow(/HEADROOM_API_KEY/);
    expect(() => assertSafeBind('0.0.0.0', KEY)).not.toThrow();
    for (const h of ['127.0.0.1', 'localhost', '::1', '127.0.0.2'])
      expect(() => assertSafeBind(h, undefined)).not.toThrow();
  });
});

describe('bodies', () => {
  const app = makeApp({});

  it('parses Ollama bodies as JSON whatever the content type, as Ollama does', async () => {
    for (const headers of [
      {},
      { 'content-type': 'application/x-www-form-urlencoded' },
      { 'content-type': 'text/plain' },
      { 'content-type': 'application/json' },
    ]) {
      const res = await app.inject({
        method: 'POST',
        url: '/api/show',
        headers,
        payload: '{"model":"nope"}',
      });
      expect(res.statusCode, JSON.stringify(headers)).toBe(404);
      expect(res.json().error).toMatch(/nope/);
    }
  });

  it('answers oversized and malformed Ollama bodies with 4xx in its shape', async () => {
    const big = await app.inject({
      method: 'POST',
      url: '/api/chat',
      payload: JSON.stringify({ model: 'm1', prompt: 'x'.repeat(2000) }),
    });
    expect(big.statusCode).toBe(413);
    expect(big.json().error).toMatch(/limits\.maxBodyBytes/);
    const bad = await app.inject({ method: 'POST', url: '/api/chat', payload: '{"model":' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toMatch(/not valid JSON/);
    const proto = await app.inject({
      method: 'POST',
      url: '/api/chat',
      payload: '{"model":"m1","__proto__":{"x":1}}',
    });
    expect(proto.statusCode).toBe(400);
  });
});
