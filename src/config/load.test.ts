import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './load.js';
import { parseByteSize, parseDuration } from './units.js';

describe('loadConfig', () => {
  it('gives every default for an empty file', () => {
    const c = loadConfig('');
    expect(c.host).toBe('127.0.0.1');
    expect(c.port).toBe(8642);
    expect(c.runner.contextSize).toBe(4096);
    expect(c.limits.maxBodyBytes).toBe(4 * 1024 * 1024);
    expect(c.limits.stopGraceMs).toBe(5000);
    expect(c.demoModel).toBe(true);
  });

  it('normalises units', () => {
    const c = loadConfig(
      'limits:\n  maxBodyBytes: 1MB\n  loadTimeout: 2m\nlogs:\n  maxBytes: 1MiB\n',
    );
    expect(c.limits.maxBodyBytes).toBe(1e6);
    expect(c.limits.loadTimeoutMs).toBe(120_000);
    expect(c.logs.maxBytes).toBe(1024 * 1024);
  });

  it('names the key that is wrong and why', () => {
    expect(() => loadConfig('port: 70000\n', 'my.yaml')).toThrow(/my\.yaml: port: .*65535/);
    expect(() => loadConfig('runner:\n  kvCacheType: q2\n')).toThrow(/runner\.kvCacheType/);
    expect(() => loadConfig('prot: 1\n')).toThrow(/unknown key\(s\) "prot"/);
    expect(() => loadConfig('models:\n  "../etc": {}\n')).toThrow(/models\.\.\.\/etc/);
  });

  it('rejects YAML syntax errors and non-mappings with ConfigError', () => {
    expect(() => loadConfig('port: [1,\n')).toThrow(ConfigError);
    expect(() => loadConfig('- a\n- b\n')).toThrow(/top level must be a mapping/);
    expect(() => loadConfig('a: 1\na: 2\n')).toThrow(ConfigError);
  });
});

describe('scheduler config', () => {
  it('defaults and normalises the scheduler keys', () => {
    const c = loadConfig('');
    expect(c.scheduler).toMatchObject({
      budget: { fraction: 0.8, reserveBytes: 1024 ** 3 },
      ttlMs: 300_000,
      maxLoadedModels: Infinity,
      queue: { maxLength: 32, maxWaitMs: 300_000 },
      drainDeadlineMs: 30_000,
      optimisation: 'basic',
      pin: [],
      preload: [],
    });
    const d = loadConfig(
      'scheduler:\n  budget: { cap: 2GiB, reserve: 100MiB }\n  ttl: never\n  maxLoadedModels: 2\n  pin: [a]\nmodels:\n  a: { ttl: 10m, pin: true }\n',
    );
    expect(d.scheduler.budget.capBytes).toBe(2 * 1024 ** 3);
    // The GPU budget: defaults, and a partial override keeping the rest of its defaults.
    expect(c.scheduler.budget.gpu).toEqual({ fraction: 0.9, reserveBytes: 512 * 1024 ** 2 });
    expect(
      loadConfig('scheduler:\n  budget: { gpu: { cap: 6GiB } }\n').scheduler.budget,
    ).toMatchObject({
      fraction: 0.8,
      reserveBytes: 1024 ** 3,
      gpu: { fraction: 0.9, capBytes: 6 * 1024 ** 3, reserveBytes: 512 * 1024 ** 2 },
    });
    expect(() => loadConfig('scheduler:\n  budget: { gpu: { fraction: 0 } }\n')).toThrow(
      /scheduler\.budget\.gpu\.fraction/,
    );
    expect(c.scheduler.recycle).toEqual({
      growthBytes: 256 * 1024 ** 2,
      fraction: 0.25,
      minRequests: 100,
    });
    expect(loadConfig('scheduler:\n  recycle: { enabled: false }\n').scheduler.recycle).toBe(
      undefined,
    );
    expect(() => loadConfig('scheduler:\n  recycle: { minRequests: 0 }\n')).toThrow(
      /scheduler\.recycle\.minRequests/,
    );
    expect(d.scheduler.ttlMs).toBe(Infinity);
    expect(d.models.a).toMatchObject({ ttl: '10m', pin: true });
  });

  it('rejects bad scheduler values with the key path', () => {
    expect(() => loadConfig('scheduler:\n  budget: { fraction: 2 }\n')).toThrow(
      /scheduler\.budget\.fraction/,
    );
    expect(() => loadConfig('scheduler:\n  optimisation: extreme\n')).toThrow(
      /scheduler\.optimisation/,
    );
    expect(() => loadConfig('scheduler:\n  queue: { maxWait: soon }\n')).toThrow(ConfigError);
  });
});

describe('units', () => {
  it('parses durations and sizes', () => {
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1500ms')).toBe(1500);
    expect(parseDuration('never')).toBe(Infinity);
    expect(parseByteSize('8GB')).toBe(8e9);
    expect(parseByteSize('1.5GiB')).toBe(1.5 * 1024 ** 3);
    expect(() => parseDuration('5 parsecs')).toThrow(RangeError);
    expect(() => parseByteSize('lots')).toThrow(RangeError);
  });
});
