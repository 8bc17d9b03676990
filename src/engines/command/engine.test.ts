import { describe, expect, it } from 'vitest';
import type { RunnerConfig } from '../types.js';
import { runnerConfig } from '../../../test/helpers/runner.js';
import { CommandEngine } from './engine.js';

const config: RunnerConfig = runnerConfig('/models/base.bin', {
  engine: 'command',
  contextSize: 4096,
  command: {
    argv: ['whisper-server', '--host', '${HOST}', '--port', '${PORT}', '-m', '${MODEL}', '-x'],
    health: '/ready',
  },
});

describe('CommandEngine', () => {
  it('fills in ${HOST}, ${PORT} and ${MODEL}, each value its own argument, and polls the health path', () => {
    const spec = new CommandEngine().launch(config, { port: 41234, name: 'speech' });
    expect(spec.command).toBe('whisper-server');
    expect(spec.args).toEqual([
      '--host',
      '127.0.0.1',
      '--port',
      '41234',
      '-m',
      '/models/base.bin',
      '-x',
    ]);
    expect(spec.readiness).toEqual({ kind: 'http', port: 41234, path: '/ready' });
  });

  it("fills ${MODEL} with the model's name when it has no path", () => {
    const spec = new CommandEngine().launch(
      {
        ...config,
        modelPath: '',
        command: { argv: ['srv', '--model=${MODEL}'], health: '/health' },
      },
      { port: 1, name: 'mlx-community/qwen' },
    );
    expect(spec.args).toEqual(['--model=mlx-community/qwen']);
  });

  it('refuses a config without a command', () => {
    const { command: _c, ...bare } = config;
    expect(() => new CommandEngine().launch(bare, { port: 1 })).toThrow(/needs `command`/);
  });
});
