import { describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/logger.js';
import { ModelManager } from '../scheduler/model-manager.js';
import { createApp } from './app.js';
import { testServerCore } from '../../test/helpers/server-core.js';

/** The app in-process (no port): routes, validation and error rendering over a real manager. */
function makeApp(startRunner: ConstructorParameters<typeof ModelManager>[0]['startRunner']) {
  const core = testServerCore({
    models: ['m1'],
    startRunner,
    core: { logTail: async () => 'last lines\n' },
  });
  return createApp(core, { log: silentLogger(), bodyLimit: 1024 });
}

const chat = (body: unknown) => ({
  method: 'POST' as const,
  url: '/v1/chat/completions',
  payload: body as object,
});

describe('HTTP app', () => {
  const app = makeApp(() => Promise.reject(new Error('no such file')));

  it('lists models in the OpenAI shape', async () => {
    const res = await app.inject({ url: '/v1/models' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      object: 'list',
      data: [
        { id: 'm1', object: 'model', owned_by: 'headroom', source: 'headroom', state: 'unloaded' },
      ],
    });
  });

  it('answers 404 with the known names for an unknown model', async () => {
    const res = await app.inject(chat({ model: 'x', messages: [{ role: 'user', content: 'hi' }] }));
    expect(res.statusCode).toBe(404);
    expect(res.json().error).toMatchObject({
      code: 'model_not_found',
      type: 'not_found_error',
      param: 'model',
      known: ['m1'],
    });
  });

  it('names the invalid field', async () => {
    const res = await app.inject(
      chat({ model: 'm1', messages: [{ role: 'wizard', content: 'hi' }] }),
    );
    expect(res.statusCode).toBe(400);
    expect(res.json().error.param).toBe('messages.0.role');
    const noModel = await app.inject(chat({ messages: [{ role: 'user', content: 'hi' }] }));
    expect(noModel.json().error.message).toMatch(/model is required/);
    const n = await app.inject(
      chat({ model: 'm1', n: 3, messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(n.json().error).toMatchObject({ param: 'n', code: 'invalid_parameter' });
  });

  it('rejects malformed JSON, empty and oversized bodies, and unknown routes with envelopes', async () => {
    const bad = await app.inject({
      method: 'POST',
      url: '/v1/completions',
      headers: { 'content-type': 'application/json' },
      payload: '{"a":',
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('invalid_json');
    const big = await app.inject({
      method: 'POST',
      url: '/v1/completions',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ prompt: 'x'.repeat(2000) }),
    });
    expect(big.statusCode).toBe(413);
    expect(big.json().error.code).toBe('body_too_large');
    const route = await app.inject({ url: '/nope' });
    expect(route.statusCode).toBe(404);
    expect(route.json().error.code).toBe('unknown_route');
  });

  it('answers 503 with the reason when a load fails, and shows it in /admin/models', async () => {
    const res = await app.inject(
      chat({ model: 'm1', messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(res.statusCode).toBe(503);
    expect(res.json().error).toMatchObject({ code: 'model_load_failed' });
    expect(res.json().error.message).toContain('no such file');
    const admin = await app.inject({ url: '/admin/models' });
    expect(admin.json().models[0]).toMatchObject({
      name: 'm1',
      state: 'failed',
      lastError: 'no such file',
      inFlight: 0,
    });
  });

  it('serves log tails for known models only', async () => {
    expect((await app.inject({ url: '/admin/logs/m1?bytes=100' })).body).toBe('last lines\n');
    expect((await app.inject({ url: '/admin/logs/zz' })).statusCode).toBe(404);
    expect((await app.inject({ url: '/admin/logs/m1?bytes=-1' })).statusCode).toBe(400);
  });
});
