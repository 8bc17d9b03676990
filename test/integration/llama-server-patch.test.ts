import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { findExecutable } from '../../src/engines/llama-server/binary.js';
import { LLAMA_SERVER_PATCHES } from '../../src/engines/llama-server/build.js';
import { buildLlamaServer } from '../../src/engines/llama-server/builder.js';
import {
  buildLayout,
  nodeLlamaCppPackage,
  patchesDir,
} from '../../src/engines/llama-server/source.js';

/**
 * headroom's llama.cpp patches fit the llama.cpp source node-llama-cpp ships (so an upgrade of
 * node-llama-cpp that breaks one fails here, not at a user's install), and a patch that does not
 * apply fails the build with failed.json naming it instead of building an unpatched server. Needs
 * git (and, for the build, cmake and a C++ compiler, which it checks before patching); skips and
 * says why without them. Nothing is compiled: the failing build stops at the patch.
 */

const exec = promisify(execFile);
const git = await findExecutable('git');
const cmake = await findExecutable('cmake');
if (!git) console.log('llama-server-patch.test.ts skipped: git is not on PATH');

const temps: string[] = [];
const temp = async (prefix: string): Promise<string> => {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  temps.push(dir);
  return dir;
};

afterAll(async () => {
  for (const d of temps) await rm(d, { recursive: true, force: true });
});

describe.skipIf(!git)('llama-server patches', () => {
  it('each applies to the bundled llama.cpp source', async () => {
    const src = path.join(await temp('headroom-patch-check-'), 'llama.cpp');
    await exec(git!, ['clone', '--quiet', nodeLlamaCppPackage().bundle, src]);
    for (const name of LLAMA_SERVER_PATCHES) {
      const file = path.join(patchesDir(), name);
      expect(existsSync(file)).toBe(true);
      await exec(git!, ['apply', '--check', file], { cwd: src });
    }
  }, 120_000);

  it.skipIf(!cmake)(
    'one that does not apply fails the build and says which',
    async () => {
      const cache = await temp('headroom-patch-cache-');
      const patches = await temp('headroom-patch-bad-');
      for (const name of LLAMA_SERVER_PATCHES)
        await writeFile(
          path.join(patches, name),
          [
            'diff --git a/tools/server/server-context.cpp b/tools/server/server-context.cpp',
            '--- a/tools/server/server-context.cpp',
            '+++ b/tools/server/server-context.cpp',
            '@@ -1,1 +1,1 @@',
            '-a line this llama.cpp does not have',
            '+its replacement',
            '',
          ].join('\n'),
        );
      const r = await buildLlamaServer({
        backend: 'cpu',
        force: true,
        env: { ...process.env, HEADROOM_ENGINE_CACHE: cache },
        patchesDir: patches,
      });
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.failure.reason).toContain(`patch ${LLAMA_SERVER_PATCHES[0]} does not apply`);
      expect(r.failure.fix).toMatch(/node-llama-cpp/);
      expect(existsSync(buildLayout(r.dir).failed)).toBe(true);
      expect(existsSync(buildLayout(r.dir).binary)).toBe(false);
    },
    120_000,
  );
});
