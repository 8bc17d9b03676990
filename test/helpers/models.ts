import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { forgeModel, type ForgeOptions } from '../../src/gguf/forge.js';

export const CACHE_DIR = path.resolve(import.meta.dirname, '../../.cache');
export const MODELS_CACHE = path.join(CACHE_DIR, 'models');

/**
 * A forged model cached under .cache/models (git-ignored): written once, reused by later runs.
 * The file name encodes the options so a change of shape forges a new file.
 */
export async function cachedModel(
  name: string,
  opts: Omit<ForgeOptions, 'out'>,
  dir = MODELS_CACHE,
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const out = path.join(dir, `${name}.gguf`);
  const exists = await stat(out).then(
    (s) => s.isFile() && s.size > 0,
    () => false,
  );
  if (!exists) await forgeModel({ ...opts, out });
  return out;
}

/** A small chat model (~15M parameters, F16, ChatML template): loads in well under a second. */
export function tinyChatModel(dir?: string): Promise<string> {
  return cachedModel(
    'tiny-chat',
    { params: 15_000_000, type: 'f16', ctx: 4096, chatTemplate: 'chatml', seed: 7 },
    dir,
  );
}
