import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildFailure, BuildManifest } from './build.js';
import { binaryVersion, findExecutable, resolveLlamaServer } from './binary.js';
import { buildDir, buildInputs, buildLayout, nodeLlamaCppPackage } from './source.js';

/**
 * The resolution order, with small shell scripts standing in for llama-server: each prints a
 * version line naming where it is, so a test sees which one was chosen (and whether it ran).
 */

let root: string;

async function fakeServer(dir: string, label: string, exitCode = 0): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, 'llama-server');
  // Like the real one: log lines and the version on stderr. Each run appends to runs.log.
  await writeFile(
    file,
    `#!/bin/sh\necho run >> "${dir}/runs.log"\necho "0.00.000.1 I srv  initializing" >&2\necho "version: 1 (${label})" >&2\nexit ${exitCode}\n`,
  );
  await chmod(file, 0o755);
  return file;
}

/** A build folder in the engine cache as builder.ts leaves it. */
async function fakeBuild(
  cache: string,
  label: string,
  over: Partial<BuildManifest> = {},
): Promise<string> {
  const env = { HEADROOM_ENGINE_CACHE: cache };
  const dir = buildDir(buildInputs(nodeLlamaCppPackage()), 'cpu', env);
  await fakeServer(path.join(dir, 'bin'), `${label}-binary`);
  const manifest: Partial<BuildManifest> = {
    tag: 'v0.5.0',
    backend: 'cpu',
    how: 'prebuilt-libs',
    version: `version: 1 (${label})`,
    native: false,
    cpu: 'some CPU',
    ...over,
  };
  await writeFile(buildLayout(dir).manifest, JSON.stringify(manifest));
  return dir;
}

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'headroom-binary-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('resolveLlamaServer', () => {
  it('uses the configured path first, over PATH and the built one', async () => {
    const base = path.join(root, 'order');
    const configured = await fakeServer(path.join(base, 'configured'), 'configured');
    await fakeServer(path.join(base, 'on-path'), 'on-path');
    await fakeBuild(path.join(base, 'cache'), 'built');
    const env = {
      PATH: path.join(base, 'on-path'),
      HEADROOM_ENGINE_CACHE: path.join(base, 'cache'),
    };

    const r = await resolveLlamaServer({ configuredPath: configured, env });
    expect(r).toEqual({
      path: configured,
      version: 'version: 1 (configured)',
      backend: 'unknown',
      obtained: 'config',
    });

    const fromPath = await resolveLlamaServer({ env });
    expect(fromPath).toMatchObject({ obtained: 'path', version: 'version: 1 (on-path)' });

    const built = await resolveLlamaServer({ env: { ...env, PATH: '' } });
    expect(built).toMatchObject({
      obtained: 'built',
      backend: 'cpu',
      how: 'prebuilt-libs',
      // From build.json: resolving a built binary does not run it.
      version: 'version: 1 (built)',
    });
    if (built.unavailable) throw new Error('unreachable');
    expect(built.path).toBe(
      path.join(
        path.join(base, 'cache'),
        'llama-server',
        path.basename(built.buildDir!),
        'bin',
        'llama-server',
      ),
    );
    await expect(readFile(path.join(path.dirname(built.path), 'runs.log'))).rejects.toThrow();

    // A configured path that names the build (here through a link) is the build, patches and all.
    const link = path.join(base, 'link-to-build');
    await symlink(built.path, link);
    expect(await resolveLlamaServer({ configuredPath: link, env })).toMatchObject({
      obtained: 'built',
      path: built.path,
    });
  });

  it('does not pass over a configured path that is not executable', async () => {
    const base = path.join(root, 'bad-config');
    await fakeServer(path.join(base, 'on-path'), 'on-path');
    const r = await resolveLlamaServer({
      configuredPath: path.join(base, 'missing', 'llama-server'),
      env: { PATH: path.join(base, 'on-path'), HEADROOM_ENGINE_CACHE: path.join(base, 'cache') },
    });
    expect(r).toMatchObject({ unavailable: true });
    if (!r.unavailable) throw new Error('unreachable');
    expect(r.reason).toMatch(/configured llama-server .* is not an executable file/);
  });

  it('reports a configured binary that fails to run', async () => {
    const base = path.join(root, 'failing-config');
    const configured = await fakeServer(path.join(base, 'bin'), 'broken', 3);
    const r = await resolveLlamaServer({
      configuredPath: configured,
      env: { PATH: '', HEADROOM_ENGINE_CACHE: path.join(base, 'cache') },
    });
    expect(r).toMatchObject({ unavailable: true });
    if (!r.unavailable) throw new Error('unreachable');
    expect(r.reason).toMatch(/does not run/);
  });

  it('passes over a llama-server on PATH that does not run, to the built one', async () => {
    const base = path.join(root, 'broken-path');
    await fakeServer(path.join(base, 'on-path'), 'broken', 1);
    await fakeBuild(path.join(base, 'cache'), 'built');
    const r = await resolveLlamaServer({
      env: { PATH: path.join(base, 'on-path'), HEADROOM_ENGINE_CACHE: path.join(base, 'cache') },
    });
    expect(r).toMatchObject({ obtained: 'built', version: 'version: 1 (built)' });
  });

  it('is unavailable with a reason and a fix when nothing is found', async () => {
    const base = path.join(root, 'nothing');
    const r = await resolveLlamaServer({
      env: { PATH: path.join(base, 'empty'), HEADROOM_ENGINE_CACHE: path.join(base, 'cache') },
    });
    expect(r).toMatchObject({ unavailable: true });
    if (!r.unavailable) throw new Error('unreachable');
    expect(r.reason).toMatch(/no llama-server on PATH, and none built for llama\.cpp v\S+/);
    expect(r.fix).toMatch(/headroom engines build/);
  });

  it('passes over a native build made on another CPU', async () => {
    const cache = path.join(root, 'other-cpu', 'cache');
    await fakeBuild(cache, 'native', {
      how: 'full-source',
      native: true,
      cpu: 'a CPU not this one',
    });
    const r = await resolveLlamaServer({ env: { PATH: '', HEADROOM_ENGINE_CACHE: cache } });
    expect(r).toMatchObject({ unavailable: true });
    if (!r.unavailable) throw new Error('unreachable');
    expect(r.reason).toMatch(/compiled for another CPU \(a CPU not this one\)/);
    expect(r.fix).toMatch(/headroom engines build/);
  });

  it("gives a failed build's reason and fix", async () => {
    const cache = path.join(root, 'failed', 'cache');
    const dir = buildDir(buildInputs(nodeLlamaCppPackage()), 'cpu', {
      HEADROOM_ENGINE_CACHE: cache,
    });
    await mkdir(dir, { recursive: true });
    const failure: Partial<BuildFailure> = {
      reason: 'cmake not found on PATH',
      fix: 'install cmake, then run `headroom engines build`',
    };
    await writeFile(buildLayout(dir).failed, JSON.stringify(failure));
    const r = await resolveLlamaServer({ env: { PATH: '', HEADROOM_ENGINE_CACHE: cache } });
    expect(r).toEqual({
      unavailable: true,
      reason: 'no llama-server on PATH, and no usable build: cmake not found on PATH',
      fix: 'install cmake, then run `headroom engines build`',
    });
  });
});

describe('binaryVersion', () => {
  it('runs a binary once per file version (path, size, mtime)', async () => {
    const dir = path.join(root, 'memo');
    const bin = await fakeServer(dir, 'memo');
    expect(await binaryVersion(bin)).toBe('version: 1 (memo)');
    expect(await binaryVersion(bin)).toBe('version: 1 (memo)');
    expect((await readFile(path.join(dir, 'runs.log'), 'utf8')).trim().split('\n')).toHaveLength(1);
    await fakeServer(dir, 'memo-changed');
    expect(await binaryVersion(bin)).toBe('version: 1 (memo-changed)');
  });
});

describe('findExecutable', () => {
  it('finds executables on PATH and skips plain files and folders', async () => {
    const a = path.join(root, 'find', 'a');
    const b = path.join(root, 'find', 'b');
    await mkdir(path.join(a, 'tool'), { recursive: true });
    await mkdir(b, { recursive: true });
    await writeFile(path.join(b, 'plain'), 'x');
    const tool = await fakeServer(b, 'tool');
    expect(await findExecutable('llama-server', { PATH: [a, b].join(path.delimiter) })).toBe(tool);
    expect(await findExecutable('plain', { PATH: b })).toBeUndefined();
    expect(await findExecutable('tool', { PATH: a })).toBeUndefined();
  });
});
