import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileAtomic } from './atomic-write.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-atomic-'));
});
afterEach(async () => {
  await chmod(dir, 0o755).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('writeFileAtomic', () => {
  it('replaces a file whole, creating its directory, and leaves no temporary file', async () => {
    const file = path.join(dir, 'sub', 'config.yaml');
    await writeFileAtomic(file, 'a: 1\n');
    await writeFileAtomic(file, 'b: 2\n', { mode: 0o600 });
    expect(await readFile(file, 'utf8')).toBe('b: 2\n');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readdir(path.join(dir, 'sub'))).toEqual(['config.yaml']);
  });

  it('keeps the old content and removes its temporary file when the rename fails', async () => {
    // A directory where the file should be: the rename over it fails after the data was written.
    const target = path.join(dir, 'taken');
    await writeFile(path.join(dir, 'keep'), 'old');
    await mkdir(path.join(target, 'inner'), { recursive: true });
    await expect(writeFileAtomic(target, 'new')).rejects.toThrow();
    expect((await readdir(dir)).sort()).toEqual(['keep', 'taken']);
    expect(await readFile(path.join(dir, 'keep'), 'utf8')).toBe('old');
  });
});
