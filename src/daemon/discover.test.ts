import { mkdtemp, rm, writeFile, mkdir, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normaliseConfig } from '../config/load.js';
import { buildFakeStores, treeSnapshot, type FakeStores } from '../../test/helpers/model-stores.js';
import { forgeModel } from '../gguf/forge.js';
import { readModelSpec } from '../gguf/index.js';
import {
  defaultStorePaths,
  discoverModels,
  discoverOptions,
  ollamaName,
  quantOf,
} from './discover.js';

let tmp: string;
let stores: FakeStores;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'headroom-discover-'));
  const gguf = path.join(tmp, 'tiny.gguf');
  await forgeModel({ out: gguf, params: 1_000_000, ctx: 256 });
  stores = await buildFakeStores(path.join(tmp, 'stores'), gguf);
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('discoverModels', () => {
  it("finds each store's GGUF models under the names the tools give them, and writes nothing", async () => {
    const before = await treeSnapshot(path.join(tmp, 'stores'));
    const found = await discoverModels({
      ollama: stores.ollama,
      lmstudio: [stores.lmstudio, path.join(tmp, 'no-such-dir')],
      huggingface: stores.huggingface,
    });
    expect(found.warnings).toEqual([]);
    const byName = Object.fromEntries(found.models.map((m) => [m.name, m]));
    expect(Object.keys(byName).sort()).toEqual([
      'hf.co/org/Tiny-GGUF:Q4_K_M',
      'lmstudio-community/Tiny-Instruct-GGUF/Tiny-Instruct-F16',
      'lmstudio-community/Tiny-Instruct-GGUF/Tiny-Instruct-Q8_0',
      'org/Tiny-GGUF:F16',
      'org/Tiny-GGUF:Q4_K_M',
      'someone/tiny:q8',
      'tiny:latest',
    ]);
    expect(byName['tiny:latest']).toMatchObject({ source: 'ollama', store: stores.ollama });
    expect(path.basename(byName['tiny:latest']!.path)).toMatch(/^sha256-[0-9a-f]{64}$/);
    expect(byName['org/Tiny-GGUF:F16']!.path).toContain(path.join('snapshots', 'a'.repeat(40)));
    expect(byName['lmstudio-community/Tiny-Instruct-GGUF/Tiny-Instruct-F16']!.path).toMatch(
      /-00001-of-00002\.gguf$/,
    );
    // Every path found is a model the GGUF reader reads (links followed).
    for (const m of found.models) expect((await readModelSpec(m.path)).architecture).toBe('llama');
    expect(await treeSnapshot(path.join(tmp, 'stores'))).toEqual(before);
  });

  it('skips what is not a model with a warning that names it, and a missing store silently', async () => {
    const root = path.join(tmp, 'broken-ollama');
    const dir = path.join(root, 'manifests', 'registry.ollama.ai', 'library', 'bad');
    await mkdir(dir, { recursive: true });
    await mkdir(path.join(root, 'blobs'), { recursive: true });
    await writeFile(path.join(dir, 'notjson'), '{');
    await writeFile(
      path.join(dir, 'missing'),
      JSON.stringify({
        layers: [
          { mediaType: 'application/vnd.ollama.image.model', digest: `sha256:${'1'.repeat(64)}` },
        ],
      }),
    );
    await writeFile(
      path.join(dir, 'odd'),
      JSON.stringify({
        layers: [
          { mediaType: 'application/vnd.ollama.image.model', digest: 'sha256:../../etc/passwd' },
        ],
      }),
    );
    const found = await discoverModels({ ollama: root, huggingface: path.join(tmp, 'nothing') });
    expect(found.models).toEqual([]);
    expect(found.warnings).toHaveLength(3);
    expect(found.warnings.join('\n')).toMatch(/bad:notjson.*|not JSON/);
    expect(found.warnings.join('\n')).toContain('bad:missing');
    expect(found.warnings.join('\n')).toContain('odd digest');
  });

  // As root every directory is readable: there is no unreadable store to make.
  it.skipIf(process.getuid?.() === 0)(
    'warns about a store it cannot read (not as root)',
    async () => {
      const locked = path.join(tmp, 'locked');
      await mkdir(locked);
      await chmod(locked, 0);
      const found = await discoverModels({ ollama: locked });
      await chmod(locked, 0o755);
      expect(found.warnings[0]).toContain('cannot be read');
    },
  );
});

describe('names and options', () => {
  it('names Ollama models as `ollama list` does, and quantisations as llama.cpp -hf does', () => {
    expect(ollamaName('registry.ollama.ai', 'library', 'llama3.2', 'latest')).toBe(
      'llama3.2:latest',
    );
    expect(ollamaName('registry.ollama.ai', 'me', 'x', '7b')).toBe('me/x:7b');
    expect(ollamaName('hf.co', 'bartowski', 'Llama-GGUF', 'Q4_K_M')).toBe(
      'hf.co/bartowski/Llama-GGUF:Q4_K_M',
    );
    expect(quantOf('Llama-3.2-1B-Instruct-Q4_K_M')).toBe('Q4_K_M');
    expect(quantOf('model.q8_0')).toBe('Q8_0');
    expect(quantOf('qwen-IQ3_XXS')).toBe('IQ3_XXS');
    expect(quantOf('phi-bf16')).toBe('BF16');
    expect(quantOf('no-quant-here')).toBeUndefined();
  });

  it('turns the config section into store paths: off by default, env and ~ honoured', () => {
    const defaults = defaultStorePaths({ OLLAMA_MODELS: '/srv/ollama', HF_HOME: '/hf' }, '/home/u');
    expect(defaults).toEqual({
      ollama: '/srv/ollama',
      lmstudio: ['/home/u/.lmstudio/models', '/home/u/.cache/lm-studio/models'],
      huggingface: '/hf/hub',
    });
    expect(discoverOptions(normaliseConfig({}).discover, '/base', defaults)).toEqual({});
    const on = normaliseConfig({
      discover: {
        ollama: { enabled: true },
        lmstudio: { enabled: true, paths: ['rel/models'] },
        huggingface: { enabled: true, path: '/cache/hub' },
      },
    }).discover;
    expect(discoverOptions(on, '/base', defaults)).toEqual({
      ollama: '/srv/ollama',
      lmstudio: ['/base/rel/models'],
      huggingface: '/cache/hub',
    });
  });
});
