import { copyFile, mkdtemp, open, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { tinyChatModel } from '../helpers/models.js';

/**
 * A real daemon (real runner on a forged model) answers hostile and malformed input: every bad
 * request gets a 4xx with the error envelope (Ollama's `{"error": "…"}` on /api) and a message a
 * person can act on, within seconds, and the daemon keeps serving afterwards. The API key is on,
 * so the table also proves every route is behind it.
 */

const KEY = 'e2e-key-0123456789abcdef';
const MODEL = 'tiny-chat';
const BODY_LIMIT = 64 * 1024;

interface Row {
  name: string;
  method?: 'GET' | 'POST' | 'DELETE' | 'PUT';
  path: string;
  /** A string is sent as is; anything else as JSON. */
  body?: unknown;
  headers?: Record<string, string>;
  /** Leave the API key out. */
  noKey?: boolean;
  status: number;
  /** What the message must say (the part a person acts on). */
  says?: RegExp;
}

const chat = (over: Record<string, unknown>): Record<string, unknown> => ({
  model: MODEL,
  messages: [{ role: 'user', content: 'hi' }],
  max_tokens: 1,
  ...over,
});

const JSON_CT = { 'content-type': 'application/json' };

const ROWS: Row[] = [
  // /v1: bodies
  {
    name: 'truncated JSON',
    path: '/v1/chat/completions',
    body: '{"model":',
    headers: JSON_CT,
    status: 400,
    says: /not valid JSON/,
  },
  {
    name: 'empty JSON body',
    path: '/v1/chat/completions',
    body: '',
    headers: JSON_CT,
    status: 400,
    says: /empty/,
  },
  { name: 'array body', path: '/v1/chat/completions', body: '[]', headers: JSON_CT, status: 400 },
  {
    name: 'string body',
    path: '/v1/chat/completions',
    body: '"hello"',
    headers: JSON_CT,
    status: 400,
  },
  { name: 'null body', path: '/v1/chat/completions', body: 'null', headers: JSON_CT, status: 400 },
  {
    name: 'no model',
    path: '/v1/chat/completions',
    body: { messages: [{ role: 'user', content: 'hi' }] },
    status: 400,
    says: /model is required/,
  },
  { name: 'numeric model', path: '/v1/chat/completions', body: chat({ model: 7 }), status: 400 },
  {
    name: 'messages not a list',
    path: '/v1/chat/completions',
    body: chat({ messages: 'hi' }),
    status: 400,
    says: /messages/,
  },
  {
    name: 'unknown role',
    path: '/v1/chat/completions',
    body: chat({ messages: [{ role: 'wizard', content: 'hi' }] }),
    status: 400,
    says: /messages\.0\.role/,
  },
  { name: 'n > 1', path: '/v1/chat/completions', body: chat({ n: 3 }), status: 400, says: /n/ },
  {
    name: 'temperature not a number',
    path: '/v1/chat/completions',
    body: chat({ temperature: 'hot' }),
    status: 400,
    says: /temperature/,
  },
  {
    name: 'stream not a boolean',
    path: '/v1/chat/completions',
    body: chat({ stream: 'yes' }),
    status: 400,
    says: /stream/,
  },
  {
    name: 'negative max_tokens',
    path: '/v1/chat/completions',
    body: chat({ max_tokens: -5 }),
    status: 400,
    says: /max_tokens/,
  },
  {
    name: 'unknown model',
    path: '/v1/chat/completions',
    body: chat({ model: 'no-such-model' }),
    status: 404,
    says: /tiny-chat/,
  },
  // Model names never become paths, encoded or not.
  {
    name: 'model ../ traversal',
    path: '/v1/chat/completions',
    body: chat({ model: '../../../../etc/passwd' }),
    status: 404,
  },
  {
    name: 'model %2e%2e traversal',
    path: '/v1/chat/completions',
    body: chat({ model: '%2e%2e%2f%2e%2e%2fetc%2fpasswd' }),
    status: 404,
  },
  {
    name: 'model absolute path',
    path: '/v1/chat/completions',
    body: chat({ model: '/etc/passwd' }),
    status: 404,
  },
  {
    name: 'model path of a real model file',
    path: '/v1/completions',
    body: { model: '__MODEL_FILE__', prompt: 'x', max_tokens: 1 },
    status: 404,
  },
  {
    name: 'model with NUL',
    path: '/v1/chat/completions',
    body: chat({ model: 'tiny-chat\u0000.gguf' }),
    status: 404,
  },
  {
    name: 'text/plain body on /v1',
    path: '/v1/chat/completions',
    body: JSON.stringify(chat({})),
    headers: { 'content-type': 'text/plain' },
    status: 415,
    says: /send application\/json/,
  },
  {
    name: 'XML content type on /v1',
    path: '/v1/chat/completions',
    body: '<chat/>',
    headers: { 'content-type': 'application/xml' },
    status: 415,
    says: /application\/json/,
  },
  {
    name: 'malformed content type',
    path: '/v1/chat/completions',
    body: '{}',
    headers: { 'content-type': 'json' },
    status: 415,
  },
  {
    name: 'body over the limit',
    path: '/v1/chat/completions',
    body: chat({ messages: [{ role: 'user', content: 'x'.repeat(BODY_LIMIT) }] }),
    status: 413,
    says: /maxBodyBytes/,
  },
  {
    name: '__proto__ key',
    path: '/v1/chat/completions',
    body: '{"model":"tiny-chat","__proto__":{"polluted":1},"messages":[]}',
    headers: JSON_CT,
    status: 400,
  },
  {
    name: 'deeply nested content',
    path: '/v1/chat/completions',
    body: `{"model":"tiny-chat","messages":[{"role":"user","content":${'['.repeat(20_000)}${']'.repeat(20_000)}}]}`,
    headers: JSON_CT,
    status: 400,
  },
  {
    name: 'embeddings without input',
    path: '/v1/embeddings',
    body: { model: MODEL },
    status: 400,
    says: /input/,
  },
  {
    name: 'embeddings with 3000 inputs',
    path: '/v1/embeddings',
    body: { model: MODEL, input: Array.from({ length: 3000 }, () => 'a') },
    status: 400,
    says: /input/,
  },
  {
    name: 'completions prompt as object',
    path: '/v1/completions',
    body: { model: MODEL, prompt: { a: 1 } },
    status: 400,
    says: /prompt/,
  },
  // /v1: routes and URLs
  { name: 'GET on a POST route', method: 'GET', path: '/v1/chat/completions', status: 404 },
  { name: 'unknown /v1 route', method: 'GET', path: '/v1/nope', status: 404, says: /No route/ },
  { name: 'bad percent-encoding', method: 'GET', path: '/v1/%zz', status: 400 },
  { name: 'DELETE /v1/models', method: 'DELETE', path: '/v1/models', status: 404 },
  // /api (Ollama): its bodies are JSON whatever the content type
  {
    name: 'Ollama chat, no content type, messages not a list',
    path: '/api/chat',
    body: '{"model":"tiny-chat","messages":"hi"}',
    headers: {},
    status: 400,
    says: /messages/,
  },
  {
    name: 'Ollama chat, form content type, truncated JSON',
    path: '/api/chat',
    body: '{"model":"tiny-chat"',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    status: 400,
    says: /not valid JSON/,
  },
  {
    name: 'Ollama chat, unknown model',
    path: '/api/chat',
    body: '{"model":"nope","messages":[{"role":"user","content":"hi"}]}',
    headers: {},
    status: 404,
    says: /nope/,
  },
  {
    name: 'Ollama generate, ../ model',
    path: '/api/generate',
    body: { model: '../../etc/passwd', prompt: 'x' },
    status: 404,
  },
  {
    name: 'Ollama generate, bad keep_alive',
    path: '/api/generate',
    body: { model: MODEL, prompt: 'x', keep_alive: 'forever-ish' },
    status: 400,
    says: /keep_alive/,
  },
  {
    name: 'Ollama generate, num_ctx below range',
    path: '/api/generate',
    body: { model: MODEL, prompt: 'x', options: { num_ctx: 5 } },
    status: 400,
    says: /num_ctx/,
  },
  {
    name: 'Ollama generate, temperature out of range',
    path: '/api/generate',
    body: { model: MODEL, prompt: 'x', options: { temperature: 9 } },
    status: 400,
    says: /temperature/,
  },
  {
    name: 'Ollama show without a model',
    path: '/api/show',
    body: {},
    status: 400,
    says: /must name a model/,
  },
  {
    name: 'Ollama show, absolute path',
    path: '/api/show',
    body: { model: '/etc/passwd' },
    status: 404,
  },
  {
    name: 'Ollama embed, input a number',
    path: '/api/embed',
    body: { model: MODEL, input: 5 },
    status: 400,
    says: /input/,
  },
  {
    name: 'Ollama chat over the body limit',
    path: '/api/chat',
    body: { model: MODEL, messages: [{ role: 'user', content: 'x'.repeat(BODY_LIMIT) }] },
    status: 413,
    says: /maxBodyBytes/,
  },
  { name: 'GET /api/chat', method: 'GET', path: '/api/chat', status: 404 },
  // /admin
  { name: 'load an unknown model', path: '/admin/models/nope/load', status: 404, says: /nope/ },
  {
    name: 'load an encoded ../ name',
    path: '/admin/models/..%2F..%2Fetc%2Fpasswd/load',
    status: 404,
  },
  {
    name: 'load with contextSize a string',
    path: `/admin/models/${MODEL}/load`,
    body: { contextSize: 'big' },
    status: 400,
    says: /contextSize/,
  },
  {
    name: 'load with contextSize 10^12',
    path: `/admin/models/${MODEL}/load`,
    body: { contextSize: 1e12 },
    status: 400,
    says: /contextSize/,
  },
  {
    // The config's range (runner.parallel ≤ 64): a load asks for nothing a config could not.
    name: 'load with parallel 100',
    path: `/admin/models/${MODEL}/load`,
    body: { parallel: 100 },
    status: 400,
    says: /parallel/,
  },
  {
    name: 'load with an unknown key',
    path: `/admin/models/${MODEL}/load`,
    body: { ctx: 512 },
    status: 400,
    says: /ctx/,
  },
  {
    name: 'unload with force a string',
    path: `/admin/models/${MODEL}/unload`,
    body: { force: 'yes' },
    status: 400,
    says: /force/,
  },
  {
    name: 'logs of ../../etc/passwd',
    method: 'GET',
    path: '/admin/logs/..%2F..%2Fetc%2Fpasswd',
    status: 404,
  },
  { name: 'logs of %2e%2e', method: 'GET', path: '/admin/logs/%2e%2e', status: 404 },
  { name: 'logs of a NUL name', method: 'GET', path: '/admin/logs/a%00b', status: 404 },
  {
    name: 'logs with bytes not a number',
    method: 'GET',
    path: `/admin/logs/${MODEL}?bytes=abc`,
    status: 400,
    says: /bytes/,
  },
  {
    name: 'logs with bytes 10^9',
    method: 'GET',
    path: `/admin/logs/${MODEL}?bytes=1000000000`,
    status: 400,
    says: /bytes/,
  },
  {
    name: 'model name longer than a route parameter',
    method: 'GET',
    path: `/admin/models/${'a'.repeat(500)}`,
    status: 414,
  },
  // Headers: key, Host, Origin
  {
    name: 'no API key',
    method: 'GET',
    path: '/admin/models',
    noKey: true,
    status: 401,
    says: /Bearer/,
  },
  {
    name: 'wrong API key',
    method: 'GET',
    path: '/v1/models',
    noKey: true,
    headers: { authorization: 'Bearer wrong-key-0123456789' },
    status: 401,
    says: /wrong/,
  },
  {
    name: 'huge Authorization header',
    method: 'GET',
    path: '/v1/models',
    noKey: true,
    headers: { authorization: `Bearer ${'k'.repeat(8000)}` },
    status: 401,
  },
  {
    name: 'rebinding Host',
    method: 'GET',
    path: '/admin/models',
    headers: { host: 'attacker.example:8642' },
    status: 403,
    says: /allowedHosts/,
  },
  {
    name: 'cross-origin simple POST',
    path: '/api/generate',
    body: '{"model":"tiny-chat","prompt":"x"}',
    headers: { origin: 'https://evil.example', 'content-type': 'text/plain' },
    status: 403,
    says: /corsOrigins/,
  },
];

/**
 * One request with exactly these headers (node:http, since fetch will not send a Host header of
 * its own choosing); rejects when no answer comes within 15 s.
 */
function send(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body: string | undefined,
): Promise<{ status: number; contentType: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      new URL(path, base),
      {
        method,
        headers: {
          ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}),
          ...headers,
        },
        timeout: 15_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            contentType: String(res.headers['content-type'] ?? ''),
            body: text,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer to ${method} ${path} within 15 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Sends raw bytes and returns what comes back before the daemon closes the connection. */
function raw(url: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), hostname);
    let out = '';
    s.setTimeout(10_000, () => {
      s.destroy();
      reject(new Error(`no answer within 10 s; got: ${out}`));
    });
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('close', () => resolve(out));
    s.on('error', () => resolve(out));
    s.write(bytes);
  });
}

describe('hostile input against a real daemon', () => {
  let daemon: DaemonProcess;
  let modelFile: string;

  beforeAll(async () => {
    modelFile = await tinyChatModel();
    // A models folder with a good model beside a corrupt one: the corrupt one hides nothing.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-hostile-'));
    await copyFile(modelFile, path.join(dir, `${MODEL}.gguf`));
    const head = Buffer.alloc(4096);
    const fh = await open(modelFile, 'r');
    await fh.read(head, 0, head.length, 0);
    await fh.close();
    await writeFile(path.join(dir, 'broken.gguf'), head);
    await writeFile(path.join(dir, 'not-gguf.gguf'), 'this is not a model');
    daemon = await startDaemon(
      {
        modelDirs: [dir],
        demoModel: false,
        runner: { contextSize: 512, threads: 1 },
        limits: { maxBodyBytes: BODY_LIMIT },
        monitor: { enabled: false },
      },
      { env: { HEADROOM_API_KEY: KEY } },
    );
  });

  afterAll(async () => {
    await daemon?.stop();
  });

  it(`has at least 40 bad requests across /v1, /api and /admin`, () => {
    expect(ROWS.length).toBeGreaterThanOrEqual(40);
    for (const prefix of ['/v1/', '/api/', '/admin/'])
      expect(ROWS.filter((r) => r.path.startsWith(prefix)).length).toBeGreaterThanOrEqual(8);
  });

  it.each(ROWS)('$name: $status', async (row) => {
    const headers: Record<string, string> = {
      ...(row.body !== undefined && typeof row.body !== 'string' ? JSON_CT : {}),
      ...(row.noKey ? {} : { authorization: `Bearer ${KEY}` }),
      ...row.headers,
    };
    const body =
      row.body === undefined
        ? undefined
        : typeof row.body === 'string'
          ? row.body
          : JSON.stringify(row.body).replace('__MODEL_FILE__', modelFile);
    const res = await send(daemon.url, row.method ?? 'POST', row.path, headers, body);
    const text = res.body;
    expect(res.status, text).toBe(row.status);
    expect(res.contentType).toMatch(/application\/json/);
    const parsed = JSON.parse(text) as { error: unknown };
    // Ollama's shape on /api (except for what is refused before any route: Host, key, Origin).
    const message =
      typeof parsed.error === 'string'
        ? parsed.error
        : (parsed.error as { message: string; code: string; type: string }).message;
    if (typeof parsed.error !== 'string') {
      expect(parsed.error).toMatchObject({ type: expect.any(String), code: expect.any(String) });
    }
    expect(message.length, text).toBeGreaterThan(10);
    expect(message).not.toMatch(/Internal error/);
    if (row.says) expect(message).toMatch(row.says);
  });

  it('answers malformed HTTP with 4xx envelopes and closes the connection', async () => {
    const garbage = await raw(daemon.url, 'GARBAGE\r\n\r\n');
    expect(garbage).toMatch(/^HTTP\/1\.1 400/);
    expect(garbage).toMatch(/"code":"invalid_request"/);
    const bigHeader = await raw(
      daemon.url,
      `GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    );
    expect(bigHeader).toMatch(/^HTTP\/1\.1 431/);
    expect(bigHeader).toMatch(/headers are too large/);
    const smuggle = await raw(
      daemon.url,
      'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    );
    expect(smuggle).toMatch(/^HTTP\/1\.1 400/);
    const badChunk = await raw(
      daemon.url,
      `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
    );
    expect(badChunk).toMatch(/^HTTP\/1\.1 400/);
  });

  it('still serves real clients afterwards, and never lets one in without the key', async () => {
    const openai = new OpenAI({ baseURL: `${daemon.url}/v1`, apiKey: KEY });
    const res = await openai.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hello' }],
      max_tokens: 2,
    });
    expect(res.choices[0]?.message.role).toBe('assistant');
    const anon = new OpenAI({ baseURL: `${daemon.url}/v1`, apiKey: 'not-the-key-0123456789' });
    await expect(anon.models.list()).rejects.toMatchObject({ status: 401 });
    const ollama = new Ollama({ host: daemon.url, headers: { authorization: `Bearer ${KEY}` } });
    const tags = await ollama.list();
    // The corrupt files are left out; the good model is listed.
    expect(tags.models.map((m) => m.name)).toEqual([MODEL]);
    const models = await openai.models.list();
    expect(models.data.map((m) => m.id)).toContain(MODEL);
  });

  it('answers a request for a corrupt model file with a clear error, not a crash', async () => {
    const res = await fetch(`${daemon.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...JSON_CT, authorization: `Bearer ${KEY}` },
      body: JSON.stringify(chat({ model: 'broken' })),
      signal: AbortSignal.timeout(15_000),
    });
    const body = (await res.json()) as { error: { message: string; code: string } };
    expect(res.status, JSON.stringify(body)).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(600);
    expect(body.error.message).toMatch(/broken\.gguf/);
    expect(body.error.code).not.toBe('internal_error');
    expect(daemon.proc.exitCode).toBeNull();
  });
});
