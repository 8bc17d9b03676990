import Fastify from 'fastify';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/logger.js';
import { dashboardRoutes } from './dashboard-routes.js';
import { makeErrorHandler } from './errors.js';

function app(dir?: string) {
  const a = Fastify();
  a.setErrorHandler(makeErrorHandler(silentLogger()));
  dashboardRoutes(a, dir);
  return a;
}

describe('the dashboard routes', () => {
  it('serves the page at / and its files and uPlot under /ui/, same-origin only', async () => {
    const a = app();
    const page = await a.inject({ url: '/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.body).toContain('/ui/app.js');
    // Every file the page names is served.
    for (const ref of page.body.matchAll(/(?:src|href)="(\/ui\/[^"]+)"/g)) {
      const res = await a.inject({ url: ref[1]! });
      expect(res.statusCode, ref[1]).toBe(200);
    }
    const uplot = await a.inject({ url: '/ui/uplot.js' });
    expect(uplot.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(uplot.body).toContain('uPlot');
    expect((await a.inject({ url: '/ui/lib.js' })).body).toContain('export class Ring');
    await a.close();
  });

  it('answers 404 for files it does not list, including paths that leave its folder', async () => {
    const a = app();
    for (const url of ['/ui/nope.js', '/ui/..%2Fserver%2Fapp.ts', '/ui/lib.test.ts', '/ui/']) {
      const res = await a.inject({ url });
      expect(res.statusCode, url).toBe(404);
    }
    await a.close();
  });

  it('says how to fix a package built without the page', async () => {
    const a = app(await mkdtemp(path.join(os.tmpdir(), 'headroom-no-ui-')));
    const res = await a.inject({ url: '/' });
    expect(res.statusCode).toBe(404);
    expect(res.json().error.message).toContain('reinstall headroom');
    await a.close();
  });
});
