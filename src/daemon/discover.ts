import { open, readdir, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Config } from '../config/load.js';
import type { ModelSourceKind } from '../scheduler/types.js';

/**
 * Finds the GGUF models other tools already keep on this machine, named the way those tools
 * name them:
 *
 * - **Ollama** (`~/.ollama/models`, or `$OLLAMA_MODELS`): each manifest
 *   `manifests/<registry>/<namespace>/<name>/<tag>` lists its layers; the one with media type
 *   `application/vnd.ollama.image.model` is the GGUF, stored as `blobs/sha256-<hex>`. Named as
 *   `ollama list` shows it: `llama3.2:latest` (the default registry's `library` namespace),
 *   `user/model:tag` (another namespace), `hf.co/org/repo:tag` (another registry).
 * - **LM Studio** (`~/.lmstudio/models`, and the older `~/.cache/lm-studio/models`):
 *   `<publisher>/<repo>/*.gguf`, named `<publisher>/<repo>/<file>` as LM Studio's model paths are
 *   (without `.gguf`); vision projectors (`mmproj-*`) are not models.
 * - **Hugging Face hub cache** (`$HF_HUB_CACHE`, `$HF_HOME/hub`, or `~/.cache/huggingface/hub`):
 *   `models--<org>--<name>/snapshots/<revision>/*.gguf` (symlinks into `blobs/`), the revision
 *   `refs/main` names (else the newest), named as llama.cpp's `-hf` flag takes them:
 *   `<org>/<name>:<quant>` (`Q4_K_M`, `F16`, …) when the file name ends in its quantisation and
 *   no other file of the repo does the same, else `<org>/<name>:<file>`.
 *
 * Split models (`-00001-of-00003.gguf`) count once, by their first part. Only reads: nothing is
 * ever written to, moved in or deleted from these stores.
 */

export interface DiscoveredModel {
  name: string;
  path: string;
  source: ModelSourceKind;
  /** The store's root directory. */
  store: string;
}

export interface Discovery {
  models: DiscoveredModel[];
  warnings: string[];
}

/** What to look in, paths already resolved. */
export interface DiscoverOptions {
  ollama?: string;
  lmstudio?: string[];
  huggingface?: string;
}

const OLLAMA_MODEL_MEDIA = 'application/vnd.ollama.image.model';
const OLLAMA_DEFAULT_REGISTRY = 'registry.ollama.ai';
/** A manifest is a few hundred bytes; anything far larger is not one. */
const MAX_MANIFEST_BYTES = 1024 * 1024;
/** Bounds on what one store may make headroom walk. */
const MAX_MODELS_PER_STORE = 10_000;
const SPLIT_RE = /^(.*)-(\d{5})-of-(\d{5})$/;
const QUANT_RE = /[-._](I?Q\d(?:_[A-Z0-9]+)*|[BF]F?16|F32|BF16|TQ\d_\d|MXFP4(?:_MOE)?)$/i;

/** `~` and `~/…` as the user's home directory; other paths as they are. */
export function expandHome(p: string, home = os.homedir()): string {
  if (p === '~') return home;
  if (p.startsWith('~/')) return path.join(home, p.slice(2));
  return p;
}

/** The default store locations, from the environment as each tool reads it. */
export function defaultStorePaths(env: NodeJS.ProcessEnv = process.env, home = os.homedir()) {
  return {
    ollama: env.OLLAMA_MODELS || path.join(home, '.ollama', 'models'),
    lmstudio: [
      path.join(home, '.lmstudio', 'models'),
      path.join(home, '.cache', 'lm-studio', 'models'),
    ],
    huggingface:
      env.HF_HUB_CACHE ||
      (env.HF_HOME
        ? path.join(env.HF_HOME, 'hub')
        : path.join(home, '.cache', 'huggingface', 'hub')),
  };
}

/** The stores a config's `discover` section enables, their paths resolved (`~`, relative). */
export function discoverOptions(
  d: Config['discover'],
  baseDir: string,
  defaults = defaultStorePaths(),
): DiscoverOptions {
  const resolve = (p: string): string => path.resolve(baseDir, expandHome(p));
  return {
    ...(d.ollama.enabled ? { ollama: resolve(d.ollama.path ?? defaults.ollama) } : {}),
    ...(d.lmstudio.enabled
      ? { lmstudio: (d.lmstudio.paths ?? defaults.lmstudio).map(resolve) }
      : {}),
    ...(d.huggingface.enabled
      ? { huggingface: resolve(d.huggingface.path ?? defaults.huggingface) }
      : {}),
  };
}

export async function discoverModels(opts: DiscoverOptions): Promise<Discovery> {
  const out: Discovery = { models: [], warnings: [] };
  if (opts.ollama !== undefined) await discoverOllama(opts.ollama, out);
  for (const dir of opts.lmstudio ?? []) await discoverLmStudio(dir, out);
  if (opts.huggingface !== undefined) await discoverHuggingFace(opts.huggingface, out);
  return out;
}

async function list(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((n) => !n.startsWith('.')).sort();
  } catch {
    return [];
  }
}

async function isDir(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

async function isFile(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isFile(),
    () => false,
  );
}

/** A missing store is no warning (the tool is not installed); an unreadable one is. */
async function storeRoot(root: string, tool: string, out: Discovery): Promise<boolean> {
  try {
    const s = await stat(root);
    if (!s.isDirectory()) {
      out.warnings.push(`The ${tool} model store ${root} is not a directory; skipped.`);
      return false;
    }
    await readdir(root);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT')
      out.warnings.push(`The ${tool} model store ${root} cannot be read (${code ?? String(err)}).`);
    return false;
  }
}

async function readSmall(file: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(file, 'r');
    const s = await handle.stat();
    if (!s.isFile() || s.size > MAX_MANIFEST_BYTES) return undefined;
    return await handle.readFile('utf8');
  } catch {
    return undefined;
  } finally {
    await handle?.close();
  }
}

/** The name `ollama list` shows for a manifest path. */
export function ollamaName(
  registry: string,
  namespace: string,
  model: string,
  tag: string,
): string {
  if (registry === OLLAMA_DEFAULT_REGISTRY)
    return namespace === 'library' ? `${model}:${tag}` : `${namespace}/${model}:${tag}`;
  return `${registry}/${namespace}/${model}:${tag}`;
}

async function discoverOllama(root: string, out: Discovery): Promise<void> {
  if (!(await storeRoot(root, 'Ollama', out))) return;
  const manifests = path.join(root, 'manifests');
  let found = 0;
  for (const registry of await list(manifests))
    for (const namespace of await list(path.join(manifests, registry)))
      for (const model of await list(path.join(manifests, registry, namespace)))
        for (const tag of await list(path.join(manifests, registry, namespace, model))) {
          if (found >= MAX_MODELS_PER_STORE) return;
          const file = path.join(manifests, registry, namespace, model, tag);
          const name = ollamaName(registry, namespace, model, tag);
          const text = await readSmall(file);
          if (text === undefined) continue;
          let digest: unknown;
          try {
            const m = JSON.parse(text) as {
              layers?: Array<{ mediaType?: unknown; digest?: unknown }>;
            };
            digest = m.layers?.find((l) => l.mediaType === OLLAMA_MODEL_MEDIA)?.digest;
          } catch {
            out.warnings.push(`Ollama manifest ${file} is not JSON; ${name} skipped.`);
            continue;
          }
          // A model without weights (a cloud model, an adapter only) is not served from here.
          if (typeof digest !== 'string') continue;
          const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
          if (!m) {
            out.warnings.push(`Ollama manifest ${file} names an odd digest; ${name} skipped.`);
            continue;
          }
          const blob = path.join(root, 'blobs', `sha256-${m[1]}`);
          if (!(await isFile(blob))) {
            out.warnings.push(`Ollama's ${name} names a blob that is missing (${blob}); skipped.`);
            continue;
          }
          out.models.push({ name, path: blob, source: 'ollama', store: root });
          found++;
        }
}

/** GGUF files of one directory that are models: first parts of splits, no projectors. */
async function ggufFiles(dir: string): Promise<Array<{ stem: string; file: string }>> {
  const files: Array<{ stem: string; file: string }> = [];
  for (const n of await list(dir)) {
    if (!n.toLowerCase().endsWith('.gguf') || n.toLowerCase().startsWith('mmproj')) continue;
    let stem = n.slice(0, -'.gguf'.length);
    const split = SPLIT_RE.exec(stem);
    if (split) {
      if (split[2] !== '00001') continue;
      stem = split[1]!;
    }
    const file = path.join(dir, n);
    if (await isFile(file)) files.push({ stem, file });
  }
  return files;
}

async function discoverLmStudio(root: string, out: Discovery): Promise<void> {
  if (!(await storeRoot(root, 'LM Studio', out))) return;
  let found = 0;
  for (const publisher of await list(root)) {
    if (!(await isDir(path.join(root, publisher)))) continue;
    for (const repo of await list(path.join(root, publisher))) {
      const dir = path.join(root, publisher, repo);
      if (!(await isDir(dir))) continue;
      for (const { stem, file } of await ggufFiles(dir)) {
        if (found++ >= MAX_MODELS_PER_STORE) return;
        out.models.push({
          name: `${publisher}/${repo}/${stem}`,
          path: file,
          source: 'lmstudio',
          store: root,
        });
      }
    }
  }
}

/** `Q4_K_M` from `Llama-3.2-1B-Instruct-Q4_K_M`, or undefined. */
export function quantOf(stem: string): string | undefined {
  return QUANT_RE.exec(stem)?.[1]?.toUpperCase();
}

async function discoverHuggingFace(root: string, out: Discovery): Promise<void> {
  if (!(await storeRoot(root, 'Hugging Face', out))) return;
  let found = 0;
  for (const entry of await list(root)) {
    const m = /^models--(.+?)--(.+)$/.exec(entry);
    if (!m) continue;
    const repoDir = path.join(root, entry);
    const repo = `${m[1]}/${m[2]!.replace(/--/g, '/')}`;
    const snapshots = path.join(repoDir, 'snapshots');
    const ref = (await readSmall(path.join(repoDir, 'refs', 'main')))?.trim();
    let revision =
      ref && /^[0-9a-f]{6,64}$/.test(ref) && (await isDir(path.join(snapshots, ref)))
        ? ref
        : undefined;
    if (!revision) {
      // No main ref: the snapshot written last.
      let newest = -1;
      for (const r of await list(snapshots)) {
        const t = await stat(path.join(snapshots, r)).then(
          (s) => s.mtimeMs,
          () => -1,
        );
        if (t > newest) [newest, revision] = [t, r];
      }
    }
    if (!revision) continue;
    // GGUF files sit at the snapshot's top or one folder down (repos that group by quant).
    const dir = path.join(snapshots, revision);
    const files = [...(await ggufFiles(dir))];
    for (const sub of await list(dir))
      if (await isDir(path.join(dir, sub))) files.push(...(await ggufFiles(path.join(dir, sub))));
    const quants = new Map<string, number>();
    for (const f of files) {
      const q = quantOf(f.stem);
      if (q) quants.set(q, (quants.get(q) ?? 0) + 1);
    }
    for (const f of files) {
      if (found++ >= MAX_MODELS_PER_STORE) return;
      const q = quantOf(f.stem);
      const tag = q && quants.get(q) === 1 ? q : f.stem;
      out.models.push({ name: `${repo}:${tag}`, path: f.file, source: 'huggingface', store: root });
    }
  }
}
