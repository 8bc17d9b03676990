/**
 * Config reload on the real daemon (`headroom serve` on the cached tiny chat model): PUT
 * /admin/config, a change of the config file and SIGHUP, each while a streamed answer is in
 * flight or after; a bad config is refused with each key named and the config in force kept.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { forgeModel } from '../../src/gguf/forge.js';
import { startTinyChatDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { tinyChatModel } from '../helpers/models.js';

let daemon: DaemonProcess;
let extraDir: string;
let configFile: string;
let base: Record<string, unknown>;

async function admin(method: string, url: string, body?: unknown): Promise<Response> {
  return fetch(`${daemon.url}${url}`, {
    method,
    ...(body !== undefined
      ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
      : {}),
  });
}

async function ttlMs(): Promise<number> {
  const res = await admin('GET', '/admin/config');
  const body = (await res.json()) as { config: { scheduler: { ttlMs: number } } };
  return body.config.scheduler.ttlMs;
}

async function waitFor(what: string, ok: () => Promise<boolean> | boolean): Promise<void> {
  const until = Date.now() + 15_000;
  while (!(await ok())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}\n${daemon.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  extraDir = await mkdtemp(path.join(os.tmpdir(), 'headroom-reload-'));
  await forgeModel({ out: path.join(extraDir, 'second.gguf'), params: 2_000_000, ctx: 512 });
  base = {
    port: 0,
    modelDirs: [path.dirname(await tinyChatModel())],
    demoModel: false,
    runner: { contextSize: 1024, threads: 2 },
  };
  daemon = await startTinyChatDaemon();
  configFile = path.join(daemon.home, 'config.yaml');
});

afterAll(async () => {
  await daemon?.stop();
  if (extraDir) await rm(extraDir, { recursive: true, force: true });
});

describe('config reload', () => {
  it('PUT /admin/config swaps the config while a streamed answer is in flight, which completes', async () => {
    const stream = await fetch(`${daemon.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'tiny-chat',
        messages: [{ role: 'user', content: 'Hello' }],
        stream: true,
        max_tokens: 48,
        ignore_eos: true,
      }),
    });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    const decoder = new TextDecoder();
    // The first chunk: the model is loaded and generating.
    let text = decoder.decode((await reader.read()).value);

    const next = {
      ...base,
      modelDirs: [...(base.modelDirs as string[]), extraDir],
      scheduler: { ttl: '1h' },
    };
    const res = await admin('PUT', '/admin/config', next);
    expect(res.status).toBe(200);
    const result = (await res.json()) as { applied: boolean; changed: string[]; models: string[] };
    expect(result).toMatchObject({ applied: true, changed: ['modelDirs', 'scheduler'] });
    // The cached models' directory holds other tests' models too: look for these two.
    expect(result.models).toEqual(expect.arrayContaining(['second', 'tiny-chat']));

    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    expect(text).toContain('"finish_reason":"length"');
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);

    // The new catalog serves at once; the file holds the new config, written whole.
    const models = (await (await admin('GET', '/v1/models')).json()) as {
      data: Array<{ id: string }>;
    };
    expect(models.data.map((m) => m.id)).toEqual(expect.arrayContaining(['second', 'tiny-chat']));
    expect(parse(await readFile(configFile, 'utf8'))).toEqual(next);
    expect(await ttlMs()).toBe(3_600_000);
  });

  it('refuses an invalid config with each key named, and keeps the config in force', async () => {
    const res = await admin('PUT', '/admin/config', {
      ...base,
      scheduler: { ttl: 'soon' },
      bogus: 1,
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('CONFIG_INVALID');
    expect(body.error.message).toContain('scheduler.ttl');
    expect(body.error.message).toContain('"bogus"');
    expect(await ttlMs()).toBe(3_600_000);
    expect((parse(await readFile(configFile, 'utf8')) as { scheduler: unknown }).scheduler).toEqual(
      {
        ttl: '1h',
      },
    );

    const yaml = await fetch(`${daemon.url}/admin/config`, {
      method: 'PUT',
      headers: { 'content-type': 'application/yaml' },
      body: 'port: [unclosed',
    });
    expect(yaml.status).toBe(400);
  });

  it('reloads when the file changes, refuses a broken file, and re-reads it on SIGHUP', async () => {
    await writeFile(configFile, stringify({ ...base, scheduler: { ttl: '2h' } }));
    await waitFor('the file change to apply', async () => (await ttlMs()) === 7_200_000);
    // The model directory left out: its model is gone from the list.
    const models = (await (await admin('GET', '/v1/models')).json()) as {
      data: Array<{ id: string }>;
    };
    const ids = models.data.map((m) => m.id);
    expect(ids).toContain('tiny-chat');
    expect(ids).not.toContain('second');

    await writeFile(configFile, 'scheduler:\n  ttl: [\n');
    await waitFor('the broken file to be refused', () =>
      daemon.output().includes('config reload refused'),
    );
    expect(await ttlMs()).toBe(7_200_000);

    await writeFile(configFile, stringify({ ...base, scheduler: { ttl: '3h' } }));
    await waitFor('the fixed file to apply', async () => (await ttlMs()) === 10_800_000);
    daemon.proc.kill('SIGHUP');
    await waitFor('SIGHUP to re-read the file', () =>
      daemon.output().includes('"trigger":"SIGHUP"'),
    );
    expect(daemon.proc.exitCode).toBeNull();
  });

  it('drains a model the new config removes: its answer in flight completes, then it is gone', async () => {
    const stream = await fetch(`${daemon.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'tiny-chat',
        messages: [{ role: 'user', content: 'Hello' }],
        stream: true,
        max_tokens: 64,
        ignore_eos: true,
      }),
    });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    const decoder = new TextDecoder();
    let text = decoder.decode((await reader.read()).value);

    // The model's directory left out while its answer is still being read.
    const res = await admin('PUT', '/admin/config', { ...base, modelDirs: [extraDir] });
    expect(res.status).toBe(200);
    const result = (await res.json()) as { removedModels: string[]; models: string[] };
    expect(result.removedModels).toContain('tiny-chat');
    expect(result.models).toEqual(['second']);

    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    expect(text).toContain('"finish_reason":"length"');
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    await waitFor(
      'the removed model to be stopped',
      async () => (await admin('GET', '/admin/models/tiny-chat')).status === 404,
    );
  });
});
