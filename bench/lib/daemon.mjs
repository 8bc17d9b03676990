// Shared by the benches: starts the daemon the way `npm start` does (the V8 flags on
// bin/headroom.js's shebang line) in a fresh HEADROOM_HOME with the given config, and resolves
// with its URL once it listens.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(root, 'bin/headroom.js');

/** The node flags on bin/headroom.js's shebang line. */
export const NODE_FLAGS = readFileSync(BIN, 'utf8')
  .split('\n')[0]
  .split(/\s+/)
  .filter((a) => a.startsWith('--'));

/**
 * @param {string} prefix temp directory prefix, e.g. 'headroom-bench-cancel-'
 * @param {string} configYaml the config file's text
 * @returns {Promise<{ daemon: import('node:child_process').ChildProcess, url: string, home: string }>}
 */
export async function startBenchDaemon(prefix, configYaml) {
  const home = await mkdtemp(path.join(os.tmpdir(), prefix));
  const config = path.join(home, 'config.yaml');
  await writeFile(config, configYaml);
  const daemon = spawn(process.execPath, [...NODE_FLAGS, BIN, 'serve', '--config', config], {
    env: { ...process.env, HEADROOM_HOME: home, HEADROOM_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await listeningUrl(daemon, 'daemon');
  return { daemon, url, home };
}

/**
 * The URL a child process prints as "listening on http://…" on its stdout (the daemon, the bare
 * proxy); rejects if it exits first.
 * @param {import('node:child_process').ChildProcess} child
 * @param {string} name for the error
 * @returns {Promise<string>}
 */
export function listeningUrl(child, name) {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.once('exit', (c) => reject(new Error(`${name} exited ${c}`)));
  });
}

/**
 * Loads a model through the management API and resolves with its answer (`url`: the runner's);
 * rejects with the daemon's error answer.
 * @param {string} daemonUrl
 * @param {string} name
 * @returns {Promise<{ url: string } & Record<string, unknown>>}
 */
export async function loadModel(daemonUrl, name) {
  const r = await fetch(`${daemonUrl}/admin/models/${name}/load`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  });
  const body = await r.json();
  if (!r.ok) throw new Error(JSON.stringify(body));
  return body;
}
