/**
 * Models found in other tools' stores, served by the real daemon: fake Ollama, LM Studio and
 * Hugging Face stores holding the cached tiny chat model, listed in /v1/models and `headroom ps`
 * with their source, one of them loaded and answering, and the stores left as they were.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { buildFakeStores, treeSnapshot, type FakeStores } from '../helpers/model-stores.js';
import { tinyChatModel } from '../helpers/models.js';

const BIN = path.resolve(import.meta.dirname, '../../bin/headroom.js');

let tmp: string;
let stores: FakeStores;
let before: string[];
let daemon: DaemonProcess;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'headroom-stores-'));
  stores = await buildFakeStores(path.join(tmp, 'stores'), await tinyChatModel());
  before = await treeSnapshot(path.join(tmp, 'stores'));
  daemon = await startDaemon({
    demoModel: false,
    runner: { contextSize: 1024, threads: 2 },
    discover: {
      ollama: { enabled: true, path: stores.ollama },
      lmstudio: { enabled: true, paths: [stores.lmstudio] },
      huggingface: { enabled: true, path: stores.huggingface },
    },
  });
});

afterAll(async () => {
  await daemon?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe("models in other tools' stores", () => {
  it('lists them in /v1/models under their tools’ names, with the source', async () => {
    const res = await fetch(`${daemon.url}/v1/models`);
    const body = (await res.json()) as {
      data: Array<{ id: string; owned_by: string; source: string }>;
    };
    const byId = Object.fromEntries(body.data.map((m) => [m.id, m.source]));
    expect(byId).toEqual({
      'hf.co/org/Tiny-GGUF:Q4_K_M': 'ollama',
      'lmstudio-community/Tiny-Instruct-GGUF/Tiny-Instruct-F16': 'lmstudio',
      'lmstudio-community/Tiny-Instruct-GGUF/Tiny-Instruct-Q8_0': 'lmstudio',
      'org/Tiny-GGUF:F16': 'huggingface',
      'org/Tiny-GGUF:Q4_K_M': 'huggingface',
      'someone/tiny:q8': 'ollama',
      'tiny:latest': 'ollama',
    });
    expect(body.data.every((m) => m.owned_by === m.source)).toBe(true);
  });

  it('serves one from the Ollama store, and `headroom ps` shows where it came from', async () => {
    const res = await fetch(`${daemon.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'tiny:latest',
        messages: [{ role: 'user', content: 'Hello' }],
        max_tokens: 4,
      }),
    });
    expect(res.status).toBe(200);
    const answer = (await res.json()) as { model: string; choices: unknown[] };
    expect(answer.choices).toHaveLength(1);

    // Ollama's short name is the `:latest` tag: the same model, the same runner.
    const pidOf = async (name: string) =>
      (await (await fetch(`${daemon.url}/admin/models/${encodeURIComponent(name)}`)).json()) as {
        name: string;
        pid?: number;
      };
    const before = await pidOf('tiny:latest');
    const short = await fetch(`${daemon.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', prompt: 'Hi', max_tokens: 2 }),
    });
    expect(short.status).toBe(200);
    expect(await pidOf('tiny')).toMatchObject({ name: 'tiny:latest', pid: before.pid });
    expect(before.pid).toBeDefined();

    const ps = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, 'ps', '--url', daemon.url], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.once('error', reject);
      child.once('close', () => resolve(out));
    });
    const header = ps.split('\n')[0]!;
    expect(header).toMatch(/SOURCE\s*$/);
    const row = ps.split('\n').find((l) => l.startsWith('tiny:latest'))!;
    expect(row).toMatch(/ready/);
    expect(row.trimEnd()).toMatch(/ollama$/);
  });

  it('wrote nothing to the stores', async () => {
    expect(await treeSnapshot(path.join(tmp, 'stores'))).toEqual(before);
  });
});
