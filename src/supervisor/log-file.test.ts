import { writeSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NOTE_PREFIX, RunnerLog, readLogTail } from './log-file.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-log-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const line = (i: number, width = 20): string => `${`line ${i}`.padEnd(width - 1, '.')}\n`;

describe('RunnerLog', () => {
  it('appends to an existing file: notes and what a writer of its descriptor writes', async () => {
    const file = path.join(dir, 'a.log');
    await writeFile(file, 'old\n');
    const log = await RunnerLog.open({ path: file, maxBytes: 1024, keep: 1 });
    await log.note('first note');
    // What a runner does with the descriptor it was given: plain appends.
    writeSync(log.fd, 'runner output\n');
    await log.note('second note\n');
    expect(await log.size()).toBe(
      Buffer.byteLength('old\nfirst note\nrunner output\nsecond note\n'),
    );
    await log.close();
    await log.close();
    expect(await readFile(file, 'utf8')).toBe('old\nfirst note\nrunner output\nsecond note\n');
    await expect(log.note('late')).rejects.toThrow(/closed/);
  });

  it('rotates past the cap by copy and truncate: the writer goes on in the emptied file', async () => {
    const file = path.join(dir, 'r.log');
    const log = await RunnerLog.open({ path: file, maxBytes: 100, keep: 2 });
    let n = 0;
    for (let round = 0; round < 3; round++) {
      expect(await log.check()).toBe(false);
      for (let i = 0; i < 8; i++) writeSync(log.fd, line(n++));
      expect(await log.check()).toBe(true);
      expect(await log.size()).toBe(0);
    }
    writeSync(log.fd, line(n));
    await log.close();
    expect((await readdir(dir)).sort()).toEqual(['r.log', 'r.log.1', 'r.log.2']);
    expect(await readFile(file, 'utf8')).toBe(line(24));
    expect(await readFile(`${file}.1`, 'utf8')).toBe(
      Array.from({ length: 8 }, (_, i) => line(16 + i)).join(''),
    );
    expect(await readFile(`${file}.2`, 'utf8')).toBe(
      Array.from({ length: 8 }, (_, i) => line(8 + i)).join(''),
    );
  });

  it('keeps no rotated file with keep 0', async () => {
    const file = path.join(dir, 'k.log');
    const log = await RunnerLog.open({ path: file, maxBytes: 10, keep: 0 });
    writeSync(log.fd, line(1));
    expect(await log.check()).toBe(true);
    await log.close();
    expect(await readdir(dir)).toEqual(['k.log']);
    expect((await stat(file)).size).toBe(0);
  });

  it('quotes this run only in its tail, without the notes, cut to the bytes asked', async () => {
    const file = path.join(dir, 't.log');
    await writeFile(file, 'an earlier run\n');
    const log = await RunnerLog.open({ path: file, maxBytes: 1 << 20, keep: 1 });
    expect(await log.tail(100)).toBe('');
    await log.note(`${NOTE_PREFIX}2026-01-01T00:00:00.000Z] starting`);
    writeSync(log.fd, 'loading\nfailed: no such tensor\n');
    await log.note(`${NOTE_PREFIX}2026-01-01T00:00:01.000Z] pid 7`);
    expect(await log.tail(100)).toBe('loading\nfailed: no such tensor\n');
    expect(await log.tail(10)).toBe('ch tensor\n');
    await log.close();
  });

  it('refuses a bad cap', async () => {
    for (const maxBytes of [0, -1, 1.5, Number.NaN])
      await expect(
        RunnerLog.open({ path: path.join(dir, 'x.log'), maxBytes, keep: 1 }),
      ).rejects.toThrow(RangeError);
    await expect(
      RunnerLog.open({ path: path.join(dir, 'x.log'), maxBytes: 10, keep: -1 }),
    ).rejects.toThrow(RangeError);
  });
});

describe('readLogTail', () => {
  it('returns the last N bytes, or the whole file when smaller', async () => {
    const file = path.join(dir, 't.log');
    await writeFile(file, 'abcdefghij');
    expect(await readLogTail(file, 4)).toBe('ghij');
    expect(await readLogTail(file, 100)).toBe('abcdefghij');
    expect(await readLogTail(file, 0)).toBe('');
  });

  it('drops a partial UTF-8 character at the cut', async () => {
    const file = path.join(dir, 'u.log');
    await writeFile(file, 'é€x'); // c3 a9 | e2 82 ac | 78
    expect(await readLogTail(file, 3)).toBe('x'); // cut inside €: its continuation bytes are dropped
    expect(await readLogTail(file, 4)).toBe('€x');
  });

  it('reads a large file by offset', async () => {
    const file = path.join(dir, 'big.log');
    await writeFile(file, Buffer.alloc(4 * 1024 * 1024, 'a'));
    await writeFile(file, 'THE END', { flag: 'a' });
    expect(await readLogTail(file, 10)).toBe('aaaTHE END');
  });

  it('propagates ENOENT', async () => {
    await expect(readLogTail(path.join(dir, 'missing.log'), 10)).rejects.toMatchObject({
      code: 'ENOENT',
    });
    await expect(readLogTail(path.join(dir, 'missing.log'), 0)).rejects.toMatchObject({
      code: 'ENOENT',
    });
  });
});
