import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readOomScoreAdj } from '../monitor/reading.js';
import { ensureDaemonOomScore } from './oom-score.js';

describe("the daemon's oom_score_adj", () => {
  it('is lowered to 0 when above it', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'headroom-oom-'));
    await mkdir(path.join(root, 'proc/self'), { recursive: true });
    const file = path.join(root, 'proc/self/oom_score_adj');
    await writeFile(file, '300\n');
    expect(ensureDaemonOomScore(root)).toBe(0);
    expect((await readFile(file, 'utf8')).trim()).toBe('0');
  });

  it('is left alone at or below 0, and undefined where it cannot be read', async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'headroom-oom-'));
    expect(ensureDaemonOomScore(root)).toBeUndefined();
    await mkdir(path.join(root, 'proc/self'), { recursive: true });
    await writeFile(path.join(root, 'proc/self/oom_score_adj'), '-100\n');
    expect(ensureDaemonOomScore(root)).toBe(-100);
  });

  it.runIf(process.platform === 'linux')('is at or below 0 for this process after it', () => {
    ensureDaemonOomScore();
    expect(readOomScoreAdj('self')).toBeLessThanOrEqual(0);
  });
});
