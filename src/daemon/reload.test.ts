import { describe, expect, it } from 'vitest';
import { normaliseConfig } from '../config/load.js';
import { configChanges, runnerDefaults, schedulerSettings } from './reload.js';

describe('configChanges', () => {
  it('names what changed, what takes a restart, and which parts must be rebuilt', () => {
    const old = normaliseConfig({ modelDirs: ['/a'] });
    expect(configChanges(old, normaliseConfig({ modelDirs: ['/a'] })).changed).toEqual([]);
    const d = configChanges(
      old,
      normaliseConfig({
        modelDirs: ['/a', '/b'],
        port: 9000,
        limits: { maxBodyBytes: '1MiB', loadTimeout: '1m' },
        scheduler: { ttl: '1h' },
        monitor: { interval: 500 },
      }),
    );
    expect(d.changed).toEqual([
      'limits.loadTimeoutMs',
      'limits.maxBodyBytes',
      'modelDirs',
      'monitor',
      'port',
      'scheduler',
    ]);
    expect(d.restartNeeded).toEqual(['limits.maxBodyBytes', 'port']);
    expect(d).toMatchObject({ monitorChanged: true, catalogChanged: true, budgetChanged: false });
    expect(
      configChanges(
        old,
        normaliseConfig({ modelDirs: ['/a'], scheduler: { budget: { cap: '1GB' } } }),
      ),
    ).toMatchObject({ changed: ['scheduler'], budgetChanged: true, catalogChanged: false });
  });
});

describe('settings from a config', () => {
  it('resolves units and caps threads at the cores there are', () => {
    const c = normaliseConfig({
      scheduler: { maxLoadedModels: 2, queue: { maxWait: '10s' }, recycle: { enabled: false } },
      runner: { threads: 64, kvCacheType: 'q8_0' },
    });
    expect(schedulerSettings(c)).toEqual({
      maxLoadedModels: 2,
      maxQueue: 32,
      maxWaitMs: 10_000,
      drainDeadlineMs: 30_000,
      backoffBaseMs: 1000,
      backoffMaxMs: 60_000,
    });
    expect(runnerDefaults(c, 'llama-server', 4)).toMatchObject({
      engine: 'llama-server',
      threads: 4,
      kvCacheKeyType: 'q8_0',
      kvCacheValueType: 'q8_0',
    });
  });
});
