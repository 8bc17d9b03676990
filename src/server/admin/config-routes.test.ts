import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../lib/logger.js';
import { createApp } from '../app.js';
import type { ConfigReloadResult, ServerCore } from '../core.js';
import { redactSecrets } from './config-routes.js';

const applied: ConfigReloadResult = {
  applied: true,
  changed: ['scheduler'],
  restartNeeded: [],
  removedModels: [],
  models: ['m'],
};

function appWith(file: string | undefined, received: unknown[]) {
  const core = {
    version: '0',
    startedAt: 0,
    manager: { list: () => [] },
    reload: {
      file,
      current: () => ({ port: 1, security: { apiKey: 'sk-secret', apiKeys: ['a'] } }),
      replace: (raw: unknown) => {
        received.push(raw);
        return Promise.resolve(applied);
      },
      fromFile: () => Promise.resolve({ ...applied, applied: false, changed: [] }),
    },
  } as unknown as ServerCore;
  return createApp(core, { log: silentLogger(), bodyLimit: 1 << 20 });
}

describe('/admin/config', () => {
  it('shows the config in force without secrets', async () => {
    const app = appWith('/etc/headroom.yaml', []);
    const res = await app.inject({ method: 'GET', url: '/admin/config' });
    expect(res.json()).toEqual({
      file: '/etc/headroom.yaml',
      config: { port: 1, security: { apiKey: '[redacted]', apiKeys: '[redacted]' } },
    });
    expect(
      redactSecrets({ tokenizer: 'x', maxTokens: 3, kvCacheKeyType: 'f16', authToken: 't' }),
    ).toEqual({ tokenizer: 'x', maxTokens: 3, kvCacheKeyType: 'f16', authToken: '[redacted]' });
  });

  it('takes a replacement as JSON or YAML, and refuses YAML that does not parse', async () => {
    const received: unknown[] = [];
    const app = appWith(undefined, received);
    const json = await app.inject({ method: 'PUT', url: '/admin/config', payload: { port: 2 } });
    expect(json.statusCode).toBe(200);
    expect(json.json()).toEqual(applied);
    const yaml = await app.inject({
      method: 'PUT',
      url: '/admin/config',
      headers: { 'content-type': 'application/yaml' },
      payload: 'scheduler:\n  ttl: 1h\n',
    });
    expect(yaml.statusCode).toBe(200);
    expect(received).toEqual([{ port: 2 }, { scheduler: { ttl: '1h' } }]);
    const bad = await app.inject({
      method: 'PUT',
      url: '/admin/config',
      headers: { 'content-type': 'application/yaml' },
      payload: 'port: [1\n',
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json<{ error: { message: string } }>().error.message).toContain('not valid YAML');
    expect(received).toHaveLength(2);
  });

  it('has nothing to reload without a config file', async () => {
    const res = await appWith(undefined, []).inject({
      method: 'POST',
      url: '/admin/config/reload',
    });
    expect(res.statusCode).toBe(404);
    expect(res.json<{ error: { message: string } }>().error.message).toContain(
      'without a config file',
    );
    const ok = await appWith('/f.yaml', []).inject({ method: 'POST', url: '/admin/config/reload' });
    expect(ok.json()).toMatchObject({ applied: false });
  });
});
