import { execFile, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, startTinyChatDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { enginesUnderTest } from '../helpers/engines.js';

// The live CLI against the real daemon and a real runner on the forged tiny model: `top` (one
// frame when piped; redrawn on a terminal until q), the progress line of `load` on a terminal,
// `logs -f` following a runner's log while the model loads, and the daemon's log format.
// A terminal is a real pseudo-terminal from util-linux `script`.

const run = promisify(execFile);
const BIN = path.resolve(import.meta.dirname, '../../bin/headroom.js');
const MODEL = 'tiny-chat';
const engine =
  enginesUnderTest().find((e) => e.unavailable === undefined && e.kind === 'llama-server') ??
  enginesUnderTest()[0]!;

/** Collects a child's stdout and stderr; `exit` resolves with its code. */
function child(command: string, args: string[]) {
  const proc: ChildProcess = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, output: () => out, exit };
}

/** `headroom ARGS` on a pseudo-terminal (80×24 is script's default size when not on one). */
const onTerminal = (args: string[]) =>
  child('script', [
    '-qec',
    [process.execPath, BIN, ...args].map((a) => `'${a}'`).join(' '),
    '/dev/null',
  ]);

describe(`the live CLI (${engine.kind})`, () => {
  let daemon: DaemonProcess;
  const cli = (args: string[]) => run(process.execPath, [BIN, ...args, '--url', daemon.url]);

  beforeAll(async () => {
    daemon = await startTinyChatDaemon({ engines: engine.engines, monitor: { interval: '500ms' } });
  });
  afterAll(async () => {
    await daemon?.stop();
  });

  it('top --once prints one frame: pressure, RAM, the budget bar and the models table', async () => {
    const { stdout } = await cli(['top', '--once']);
    const lines = stdout.split('\n');
    expect(lines[0]).toMatch(
      new RegExp(
        `^headroom ${daemon.url} · pressure (low|medium|high|critical) · RAM .+ available of .+`,
      ),
    );
    expect(stdout).toMatch(/^budget +\[[█░]+\] .+ of .+$/m);
    expect(stdout).toMatch(
      /^NAME +STATE +ENGINE +CTX +PAR +KV +PREDICTED +RSS +PEAK +REQS +QUEUED +TTL$/m,
    );
    expect(stdout).toMatch(new RegExp(`^${MODEL} +unloaded `, 'm'));
    expect(stdout).not.toContain('\x1b'); // piped: no terminal control sequences
  });

  it('logs -f follows the runner log while load shows its progress on a terminal', async () => {
    const follow = child(process.execPath, [BIN, 'logs', MODEL, '-f', '--url', daemon.url]);
    const load = onTerminal(['load', MODEL, '--url', daemon.url]);
    expect(await load.exit).toBe(0);
    const shown = load.output();
    expect(shown).toMatch(new RegExp(`(planning|loading) ${MODEL}`));
    expect(shown).toMatch(new RegExp(`✓ ${MODEL} ready in \\d+\\.\\ds`));
    expect(shown).toMatch(new RegExp(`^${MODEL} +ready `, 'm'));
    // The log that did not exist when `logs -f` started now streams in.
    await expect
      .poll(() => follow.output(), { timeout: 15_000 })
      .toMatch(/\[headroom .*\] ready in \d+ ms/);
    follow.proc.kill('SIGINT');
    expect(await follow.exit).toBe(0);
  });

  it('top on a terminal redraws in place and quits on q, giving the screen back', async () => {
    const top = onTerminal(['top', '--interval', '0.5', '--url', daemon.url]);
    // Two frames drawn (each starts with cursor-home + clear), the model loaded in them.
    await expect
      .poll(() => top.output().split('\x1b[H\x1b[2J').length, { timeout: 15_000 })
      .toBeGreaterThan(2);
    expect(top.output()).toMatch(new RegExp(`^ {2}${MODEL} +\\[[█░]+\\]`, 'm'));
    top.proc.stdin!.write('q');
    expect(await top.exit).toBe(0);
    expect(top.output()).toContain('\x1b[?1049l'); // left the alternate screen
  });

  it('keeps daemon logs JSON when piped, and writes them human-readable with logFormat: pretty', async () => {
    const json = daemon
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'));
    expect(json.length).toBeGreaterThan(0);
    expect(JSON.parse(json[0]!)).toHaveProperty('msg');

    const pretty = await startDaemon({ logFormat: 'pretty', demoModel: false, modelDirs: [] });
    try {
      expect(pretty.output()).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: headroom is listening/m);
      expect(
        pretty
          .output()
          .split('\n')
          .some((l) => l.startsWith('{')),
      ).toBe(false);
    } finally {
      await pretty.stop();
    }
  });
});
