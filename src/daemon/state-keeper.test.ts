import { describe, expect, it } from 'vitest';
import { savesOnStop } from './state-keeper.js';

describe('savesOnStop', () => {
  it('saves before unloads that leave time for it, never before forced or critical ones', () => {
    for (const r of [
      'ttl',
      'evicted',
      'max-models',
      'over-budget',
      'unload',
      'reload',
      'recycle',
    ] as const)
      expect(savesOnStop(r)).toBe(true);
    expect(savesOnStop('pressure', 'high')).toBe(true);
    expect(savesOnStop('pressure', 'critical')).toBe(false);
    for (const r of ['forced', 'drain-deadline', 'shutdown', 'load-cancelled'] as const)
      expect(savesOnStop(r)).toBe(false);
  });
});
