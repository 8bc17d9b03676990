import { createHash } from 'node:crypto';
import { copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * Fake model stores of other tools, laid out as those tools lay them out, holding copies of (or
 * links to) a forged GGUF file: Ollama (manifests + content-addressed blobs), LM Studio
 * (publisher/repo/*.gguf) and the Hugging Face hub cache (snapshots linking into blobs).
 */
export interface FakeStores {
  ollama: string;
  lmstudio: string;
  huggingface: string;
}

async function sha256(file: string): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

export async function buildFakeStores(root: string, gguf: string): Promise<FakeStores> {
  const ollama = path.join(root, 'ollama');
  const lmstudio = path.join(root, 'lmstudio');
  const huggingface = path.join(root, 'hf');

  // Ollama: the GGUF as a blob named by its digest, and manifests naming it.
  const digest = await sha256(gguf);
  await mkdir(path.join(ollama, 'blobs'), { recursive: true });
  await copyFile(gguf, path.join(ollama, 'blobs', `sha256-${digest}`));
  const configBlob = '{"model_format":"gguf"}';
  const configDigest = createHash('sha256').update(configBlob).digest('hex');
  await writeFile(path.join(ollama, 'blobs', `sha256-${configDigest}`), configBlob);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: {
      mediaType: 'application/vnd.docker.container.image.v1+json',
      digest: `sha256:${configDigest}`,
      size: configBlob.length,
    },
    layers: [
      { mediaType: 'application/vnd.ollama.image.model', digest: `sha256:${digest}`, size: 1 },
      {
        mediaType: 'application/vnd.ollama.image.template',
        digest: `sha256:${'0'.repeat(64)}`,
        size: 1,
      },
    ],
  });
  const manifests: Array<[string, string, string, string]> = [
    ['registry.ollama.ai', 'library', 'tiny', 'latest'],
    ['registry.ollama.ai', 'someone', 'tiny', 'q8'],
    ['hf.co', 'org', 'Tiny-GGUF', 'Q4_K_M'],
  ];
  for (const [registry, ns, model, tag] of manifests) {
    const dir = path.join(ollama, 'manifests', registry, ns, model);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, tag), manifest);
  }
  // A manifest without weights (a cloud model): not a model here.
  const cloud = path.join(ollama, 'manifests', 'registry.ollama.ai', 'library', 'cloudy');
  await mkdir(cloud, { recursive: true });
  await writeFile(path.join(cloud, 'latest'), JSON.stringify({ schemaVersion: 2, layers: [] }));

  // LM Studio: publisher/repo/file.gguf, a projector beside it, a split model.
  const repo = path.join(lmstudio, 'lmstudio-community', 'Tiny-Instruct-GGUF');
  await mkdir(repo, { recursive: true });
  await copyFile(gguf, path.join(repo, 'Tiny-Instruct-Q8_0.gguf'));
  await copyFile(gguf, path.join(repo, 'mmproj-Tiny-F16.gguf'));
  await copyFile(gguf, path.join(repo, 'Tiny-Instruct-F16-00001-of-00002.gguf'));
  await writeFile(path.join(repo, 'Tiny-Instruct-F16-00002-of-00002.gguf'), '');

  // Hugging Face: snapshots/<rev>/*.gguf linking into blobs/, refs/main naming the revision.
  const hfRepo = path.join(huggingface, 'models--org--Tiny-GGUF');
  const rev = 'a'.repeat(40);
  const old = 'b'.repeat(40);
  await mkdir(path.join(hfRepo, 'blobs'), { recursive: true });
  await mkdir(path.join(hfRepo, 'refs'), { recursive: true });
  await mkdir(path.join(hfRepo, 'snapshots', rev), { recursive: true });
  await mkdir(path.join(hfRepo, 'snapshots', old), { recursive: true });
  await copyFile(gguf, path.join(hfRepo, 'blobs', digest));
  await writeFile(path.join(hfRepo, 'refs', 'main'), rev);
  for (const name of ['tiny-q4_k_m.gguf', 'tiny-F16.gguf'])
    await symlink(
      path.join('..', '..', 'blobs', digest),
      path.join(hfRepo, 'snapshots', rev, name),
    );
  await symlink(
    path.join('..', '..', 'blobs', digest),
    path.join(hfRepo, 'snapshots', old, 'tiny-old-Q2_K.gguf'),
  );
  return { ollama, lmstudio, huggingface };
}

/** Every path under `root` with its size and mtime (links as links): to show nothing changed. */
export async function treeSnapshot(root: string): Promise<string[]> {
  const { lstat, readdir } = await import('node:fs/promises');
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const n of (await readdir(dir)).sort()) {
      const p = path.join(dir, n);
      const s = await lstat(p);
      out.push(`${path.relative(root, p)} ${s.size} ${s.mtimeMs}`);
      if (s.isDirectory()) await walk(p);
    }
  };
  await walk(root);
  return out;
}
