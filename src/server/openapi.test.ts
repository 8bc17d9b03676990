import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/logger.js';
import { createApp, registeredRoutes } from './app.js';
import type { ServerCore } from './core.js';
import { documentedRoutes, openApiText } from './openapi.js';

const core = {
  version: '0.1.0',
  startedAt: 0,
  manager: { list: () => [] },
  reload: {
    file: undefined,
    current: () => ({}),
    replace: () => Promise.reject(new Error('unused')),
    fromFile: () => Promise.reject(new Error('unused')),
  },
} as unknown as ServerCore;

describe('the OpenAPI document', () => {
  it('documents every route the app registers, and no other', async () => {
    const app = createApp(core, { log: silentLogger(), bodyLimit: 1024 });
    await app.ready();
    const registered = registeredRoutes(app).sort();
    expect(registered.length).toBeGreaterThan(20);
    expect(
      documentedRoutes().sort(),
      'add a route to (or remove it from) the table in src/server/openapi.ts',
    ).toEqual(registered);
    await app.close();
  });

  it('is served at GET /openapi.json, with the request schemas of the routes', async () => {
    const app = createApp(core, { log: silentLogger(), bodyLimit: 1024 });
    const res = await app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json<{
      openapi: string;
      paths: Record<
        string,
        Record<
          string,
          {
            requestBody?: {
              content: Record<
                string,
                { schema: { properties: Record<string, unknown>; required?: string[] } }
              >;
            };
          }
        >
      >;
    }>();
    expect(doc.openapi).toBe('3.1.0');
    const chat =
      doc.paths['/v1/chat/completions']!.post!.requestBody!.content['application/json']!.schema;
    expect(chat.required).toContain('model');
    expect(Object.keys(chat.properties)).toEqual(
      expect.arrayContaining(['messages', 'stream', 'context_overflow']),
    );
    expect(doc.paths['/admin/models/{name}/load']!.post).toBeDefined();
    await app.close();
  });

  it('docs/openapi.json is what the routes generate', async () => {
    const file = await readFile(
      path.resolve(import.meta.dirname, '../../docs/openapi.json'),
      'utf8',
    );
    expect(file, 'docs/openapi.json is out of date: run `npm run docs`').toBe(openApiText('0.1.0'));
  });
});
