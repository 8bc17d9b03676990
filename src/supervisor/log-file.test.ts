import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LineAssembler, LogFile, TailBuffer, decodeTail, readLogTail } from './log-file.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-log-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const line = (i: number, width = 20): string => `${`line ${i}`.padEnd(width - 1, '.')}\n`;

describe('LogFile', () => {
  it('appends to an existing file and reports its size', async () => {
    const file = path.join(dir, 'a.log');
    await writeFile(file, 'before\n');
    const log = await LogFile.open({ path: file, maxBytes: 1000, keep: 1 });
    expect(log.size).toBe(7);
    await log.write('after\n');
    await log.close();
    expect(await readFile(file, 'utf8')).toBe('before\nafter\n');
  });

  it('rotates to .1 … .keep at line boundaries, never exceeding the cap', async () => {
    const file = path.join(dir, 'r.log');
    const log = await LogFile.open({ path: file, maxBytes: 100, keep: 2 });
    // 30 lines of 20 bytes, written in odd-sized chunks so that lines straddle chunk edges.
    const text = Array.from({ length: 30 }, (_, i) => line(i)).join('');
    for (let off = 0; off < text.length; off += 37) await log.write(text.slice(off, off + 37));
    await log.close();
    const files = (await readdir(dir)).sort();
    expect(files).toEqual(['r.log', 'r.log.1', 'r.log.2']);
    for (const f of files) {
      const content = await readFile(path.join(dir, f), 'utf8');
      expect(Buffer.byteLength(content)).toBeLessThanOrEqual(100);
      // Line-safe: every file holds whole lines only.
      expect(content.endsWith('\n')).toBe(true);
      for (const l of content.trimEnd().split('\n')) expect(l).toMatch(/^line \d+\.+$/);
    }
    // The newest lines are in the current file, the ones before in .1, then .2.
    const current = await readFile(file, 'utf8');
    const older = await readFile(`${file}.1`, 'utf8');
    expect(current.endsWith(line(29))).toBe(true);
    expect(Number(/line (\d+)/.exec(older.trimEnd().split('\n').pop() ?? '')?.[1]) + 1).toBe(
      Number(/line (\d+)/.exec(current)?.[1]),
    );
  });

  it('cuts a chunk of many lines at a line boundary even into an empty file', async () => {
    const file = path.join(dir, 'm.log');
    const log = await LogFile.open({ path: file, maxBytes: 50, keep: 3 });
    await log.write(Array.from({ length: 6 }, (_, i) => line(i)).join('')); // 120 bytes in one chunk
    await log.close();
    expect(await readFile(`${file}.2`, 'utf8')).toBe(line(0) + line(1));
    expect(await readFile(`${file}.1`, 'utf8')).toBe(line(2) + line(3));
    expect(await readFile(file, 'utf8')).toBe(line(4) + line(5));
  });

  it('keeps no rotated file with keep 0', async () => {
    const file = path.join(dir, 'k.log');
    const log = await LogFile.open({ path: file, maxBytes: 50, keep: 0 });
    for (let i = 0; i < 10; i++) await log.write(line(i));
    await log.close();
    expect(await readdir(dir)).toEqual(['k.log']);
    expect((await stat(file)).size).toBeLessThanOrEqual(50);
    expect(await readFile(file, 'utf8')).toContain('line 9');
  });

  it('splits a line longer than the cap into cap-sized pieces', async () => {
    const file = path.join(dir, 'long.log');
    const log = await LogFile.open({ path: file, maxBytes: 10, keep: 5 });
    await log.write('x'.repeat(25) + '\n');
    await log.close();
    const sizes = await Promise.all(
      (await readdir(dir)).map(async (f) => (await stat(path.join(dir, f))).size),
    );
    expect(sizes.every((s) => s <= 10)).toBe(true);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(26);
  });

  it('serialises concurrent writes in call order', async () => {
    const file = path.join(dir, 'c.log');
    const log = await LogFile.open({ path: file, maxBytes: 1 << 20, keep: 1 });
    await Promise.all(Array.from({ length: 50 }, (_, i) => log.write(line(i))));
    await log.close();
    expect(await readFile(file, 'utf8')).toBe(
      Array.from({ length: 50 }, (_, i) => line(i)).join(''),
    );
  });

  it('rejects writes after close; close is idempotent', async () => {
    const log = await LogFile.open({ path: path.join(dir, 'x.log'), maxBytes: 100, keep: 1 });
    const a = log.close();
    expect(log.close()).toBe(a);
    await a;
    await expect(log.write('late\n')).rejects.toThrow(/closed/);
  });

  it('refuses a bad cap', async () => {
    await expect(
      LogFile.open({ path: path.join(dir, 'y.log'), maxBytes: 0, keep: 1 }),
    ).rejects.toThrow(RangeError);
    await expect(
      LogFile.open({ path: path.join(dir, 'y.log'), maxBytes: 10, keep: -1 }),
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

describe('TailBuffer', () => {
  it('keeps the last capacity bytes across chunks', () => {
    const t = new TailBuffer(5);
    t.push(Buffer.from('abc'));
    expect(t.toString()).toBe('abc');
    t.push(Buffer.from('defg'));
    expect(t.toString()).toBe('cdefg');
    t.push(Buffer.from('0123456789'));
    expect(t.toString()).toBe('56789');
    t.push(Buffer.from(''));
    expect(t.toString()).toBe('56789');
  });

  it('decodes without a broken leading character', () => {
    expect(decodeTail(Buffer.from('€x').subarray(1))).toBe('x');
  });
});

describe('LineAssembler', () => {
  it('holds a partial line until its newline', () => {
    const a = new LineAssembler();
    expect(a.push(Buffer.from('one\ntw')).toString()).toBe('one\n');
    expect(a.push(Buffer.from('o')).toString()).toBe('');
    expect(a.push(Buffer.from('\nthree\n')).toString()).toBe('two\nthree\n');
    expect(a.flush().toString()).toBe('');
  });

  it('lets go of a long partial line and flushes the rest at the end', () => {
    const a = new LineAssembler(8);
    expect(a.push(Buffer.from('0123456789')).toString()).toBe('0123456789');
    expect(a.push(Buffer.from('tail')).toString()).toBe('');
    expect(a.flush().toString()).toBe('tail');
  });

  it('holds only the partial line of a chunk larger than maxHold', () => {
    const a = new LineAssembler(8);
    expect(a.push(Buffer.from('0123456789\n0123456789\nab')).toString()).toBe(
      '0123456789\n0123456789\n',
    );
    expect(a.flush().toString()).toBe('ab');
  });
});
