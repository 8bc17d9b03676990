/**
 * A reload while a request holds a model, made deterministic with the library: the test holds a
 * lease (a request in flight) on a real runner, replaces the config without the model's directory,
 * and sees the model draining — its runner still answering — until the lease is released, then
 * gone. A bad config in between is refused with the old one and the file kept.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createHeadroom, type Headroom } from '../../src/daemon/headroom.js';
import { silentLogger } from '../../src/lib/logger.js';
import { forgeModel } from '../../src/gguf/forge.js';
import { isHeadroomError } from '../../src/lib/errors.js';
import { parseConfigText } from '../../src/config/file.js';

let tmp: string;
let hr: Headroom;
let configFile: string;
let base: Record<string, unknown>;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'headroom-reload-drain-'));
  const models = path.join(tmp, 'models');
  await forgeModel({
    out: path.join(models, 'tiny.gguf'),
    params: 2_000_000,
    ctx: 512,
    chatTemplate: 'chatml',
  });
  configFile = path.join(tmp, 'config.yaml');
  base = {
    modelDirs: [models],
    demoModel: false,
    runner: { contextSize: 256, threads: 1 },
    monitor: { enabled: false },
  };
  const text = stringify(base);
  await writeFile(configFile, text);
  hr = await createHeadroom({
    home: path.join(tmp, 'home'),
    config: parseConfigText(text, configFile),
    configFile: { path: configFile },
    log: silentLogger(),
  });
});

afterAll(async () => {
  await hr?.dispose();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('a reload that removes a model in use', () => {
  it('drains it: the request in flight keeps its runner until it ends', async () => {
    const lease = await hr.manager.acquire('tiny');
    const unloaded = new Promise<string>((resolve) =>
      hr.events.once('unload', (e) => resolve(e.reason)),
    );

    const result = await hr.replaceConfig({ ...base, modelDirs: [] });
    expect(result).toMatchObject({ applied: true, removedModels: ['tiny'], models: [] });
    const st = hr.manager.status('tiny');
    expect(st).toMatchObject({ state: 'draining', inFlight: 1 });
    // The runner still answers the request that holds it.
    const res = await fetch(`${lease.url}/health`);
    expect(res.status).toBe(200);

    lease.release();
    expect(await unloaded).toBe('unload');
    let err: unknown;
    try {
      hr.manager.status('tiny');
    } catch (e) {
      err = e;
    }
    expect(isHeadroomError(err) && err.code).toBe('model_not_found');
    // The file holds the new config.
    expect(await readFile(configFile, 'utf8')).toBe(stringify({ ...base, modelDirs: [] }));
  });

  it('refuses a bad config whole: the config in force and the file stay', async () => {
    const fileBefore = await readFile(configFile, 'utf8');
    const ttlBefore = hr.config.scheduler.ttlMs;
    await expect(hr.replaceConfig({ ...base, scheduler: { ttl: 'soon' } })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringContaining('scheduler.ttl'),
    });
    expect(hr.config.scheduler.ttlMs).toBe(ttlBefore);
    expect(hr.config.modelDirs).toEqual([]);
    expect(await readFile(configFile, 'utf8')).toBe(fileBefore);
  });
});
