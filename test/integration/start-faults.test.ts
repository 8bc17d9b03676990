import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { startDaemon } from '../helpers/daemon.js';
import { tinyChatModel } from '../helpers/models.js';

/**
 * The daemon's start and its home under hostile conditions, with the real `headroom serve`:
 * an unsafe bind, a torn config file, a full disk and a read-only home. Each either refuses with
 * a message naming the fix, or keeps serving without corrupting what it had written.
 */

const BIN = path.resolve(import.meta.dirname, '../../bin/headroom.js');
const KEY = 'start-faults-key-0123456789';

/** Runs `headroom serve` expecting it to exit; resolves its exit code and output. */
function serveExpectingExit(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, 'serve', ...args], {
      env: { ...process.env, HEADROOM_API_KEY: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

async function tempConfig(config: Record<string, unknown> | string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-start-'));
  const file = path.join(dir, 'config.yaml');
  await writeFile(file, typeof config === 'string' ? config : stringify(config));
  return file;
}

describe('refusals at start', () => {
  it('refuses a non-loopback bind without an API key, naming the options', async () => {
    const file = await tempConfig({ port: 0, demoModel: false });
    const home = path.dirname(file);
    const r = await serveExpectingExit(['--config', file, '--host', '0.0.0.0'], {
      HEADROOM_HOME: home,
    });
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/refusing to bind 0\.0\.0\.0 without an API key/);
    expect(r.out).toMatch(/--api-key/);
    expect(r.out).not.toMatch(/listening/);
  });

  it('binds a wildcard address with a key, and lets no one in without it', async () => {
    const daemon = await startDaemon(
      { host: '0.0.0.0', demoModel: false },
      { env: { HEADROOM_API_KEY: KEY } },
    );
    try {
      const url = daemon.url.replace('0.0.0.0', '127.0.0.1');
      expect((await fetch(`${url}/v1/models`)).status).toBe(401);
      const ok = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${KEY}` } });
      expect(ok.status).toBe(200);
    } finally {
      await daemon.stop();
    }
  });

  it('refuses a torn config file with the file and the line at fault', async () => {
    // A config cut short mid-write: an unterminated flow mapping.
    const file = await tempConfig('port: 0\nscheduler:\n  budget: { fraction: 0.5, reserve: "1G');
    const r = await serveExpectingExit(['--config', file], { HEADROOM_HOME: path.dirname(file) });
    expect(r.code).toBe(2);
    expect(r.out).toContain(file);
    expect(r.out).toMatch(/YAML syntax error/);
  });

  it('refuses a config with a short API key, saying how long one must be', async () => {
    const file = await tempConfig({ port: 0, security: { apiKey: 'short' } });
    const r = await serveExpectingExit(['--config', file], { HEADROOM_HOME: path.dirname(file) });
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/security\.apiKey: an API key of at least 16 characters/);
  });
});

/**
 * A tmpfs of `size` mounted at a new folder, or why not (mounting needs root with
 * CAP_SYS_ADMIN; elsewhere the tests below are skipped with that reason printed).
 */
async function tmpfs(size: string): Promise<{ dir: string } | { skip: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-tmpfs-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], {
    encoding: 'utf8',
  });
  if (r.status !== 0) return { skip: `cannot mount a tmpfs here: ${r.stderr || r.error}` };
  mounts.push(dir);
  return { dir };
}
const mounts: string[] = [];

afterAll(async () => {
  for (const m of mounts) {
    spawnSync('umount', ['-l', m]);
    await rm(m, { recursive: true, force: true });
  }
});

describe('a full or read-only $HEADROOM_HOME', () => {
  const footprints = JSON.stringify({ version: 1, entries: {} }) + '\n';

  it('keeps serving on a full disk and leaves the files it had whole', async (ctx) => {
    const fs = await tmpfs('1m');
    if ('skip' in fs) {
      console.warn(`skipped: ${fs.skip}`);
      ctx.skip();
      return;
    }
    const model = await tinyChatModel();
    await mkdir(path.join(fs.dir, 'state'), { recursive: true });
    await writeFile(path.join(fs.dir, 'state', 'footprints.json'), footprints);
    // Fill the disk: writes past this point fail with ENOSPC.
    spawnSync('dd', ['if=/dev/zero', `of=${path.join(fs.dir, 'filler')}`, 'bs=4k', 'count=1024']);
    const daemon = await startDaemon(
      {
        modelDirs: [path.dirname(model)],
        demoModel: false,
        runner: { contextSize: 512, threads: 1 },
      },
      { env: { HEADROOM_HOME: fs.dir } },
    );
    try {
      for (let i = 0; i < 2; i++) {
        const res = await fetch(`${daemon.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'tiny-chat',
            messages: [{ role: 'user', content: 'hi' }],
            max_tokens: 2,
          }),
        });
        expect(res.status, await res.text()).toBe(200);
      }
      expect(daemon.output()).toMatch(/ENOSPC/);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
    // The store was never half-written: the old content is still there, whole.
    expect(await readFile(path.join(fs.dir, 'state', 'footprints.json'), 'utf8')).toBe(footprints);
  });

  it('refuses to start in an empty read-only home, naming HEADROOM_HOME', async (ctx) => {
    const fs = await tmpfs('1m');
    if ('skip' in fs) {
      console.warn(`skipped: ${fs.skip}`);
      ctx.skip();
      return;
    }
    expect(spawnSync('mount', ['-o', 'remount,ro', fs.dir]).status).toBe(0);
    const file = await tempConfig({ port: 0, demoModel: false });
    const r = await serveExpectingExit(['--config', file], { HEADROOM_HOME: fs.dir });
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/cannot create .*models in headroom's home .*EROFS/);
    expect(r.out).toMatch(/\$HEADROOM_HOME at a writable directory/);
  });

  it('answers loads in a read-only home that has its folders with the path and errno', async (ctx) => {
    const fs = await tmpfs('1m');
    if ('skip' in fs) {
      console.warn(`skipped: ${fs.skip}`);
      ctx.skip();
      return;
    }
    for (const d of ['models', 'logs', 'state']) await mkdir(path.join(fs.dir, d));
    expect(spawnSync('mount', ['-o', 'remount,ro', fs.dir]).status).toBe(0);
    const model = await tinyChatModel();
    const daemon = await startDaemon(
      {
        modelDirs: [path.dirname(model)],
        demoModel: false,
        runner: { contextSize: 512, threads: 1 },
      },
      { env: { HEADROOM_HOME: fs.dir } },
    );
    try {
      const res = await fetch(`${daemon.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'tiny-chat',
          messages: [{ role: 'user', content: 'hi' }],
          max_tokens: 2,
        }),
      });
      // The runner's log cannot be opened: the load fails with why, the daemon stays up.
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(res.status).toBe(503);
      expect(body.error.code).toBe('model_load_failed');
      expect(body.error.message).toMatch(/EROFS: read-only file system, open '.*tiny-chat\.log'/);
      expect((await fetch(`${daemon.url}/v1/models`)).status).toBe(200);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });
});
