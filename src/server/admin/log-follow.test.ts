import { appendFile, mkdtemp, rename, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { followLog } from './log-follow.js';

/** Collects what the follower yields until `until` holds (or 5 s pass), then stops it. */
async function collect(
  file: string,
  fromBytes: number,
  steps: Array<() => Promise<void>>,
  until: (text: string) => boolean,
): Promise<string> {
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), 5000);
  let text = '';
  let step = 0;
  try {
    for await (const chunk of followLog(file, {
      fromBytes,
      signal: stop.signal,
      intervalMs: 10,
      chunkBytes: 8,
    })) {
      text += chunk.toString();
      if (until(text)) stop.abort();
      else if (step < steps.length) await steps[step++]!();
    }
  } finally {
    clearTimeout(timer);
  }
  return text;
}

describe('followLog', () => {
  it('sends the tail, then what is appended, then the new file after a rotation', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-follow-'));
    const file = path.join(dir, 'runner.log');
    await writeFile(file, 'old line\nlast line\n');
    const text = await collect(
      file,
      10,
      [
        () => appendFile(file, 'appended\n'),
        async () => {
          await rename(file, `${file}.1`);
          await writeFile(file, 'rotated\n');
        },
      ],
      (t) => t.includes('rotated\n'),
    );
    // Only the last 10 bytes of what was there; nothing of the rotated-away file twice.
    expect(text).toBe('last line\nappended\nrotated\n');
  });

  it('starts over after the file is truncated in place (copy-and-truncate rotation)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-follow-'));
    const file = path.join(dir, 'runner.log');
    await writeFile(file, 'first\n');
    const text = await collect(
      file,
      100,
      [
        async () => {
          await truncate(file, 0);
          await appendFile(file, 'new\n');
        },
      ],
      (t) => t.endsWith('new\n'),
    );
    expect(text).toBe('first\nnew\n');
  });

  it('waits for a file that does not exist yet and reads it from its start', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-follow-'));
    const file = path.join(dir, 'later.log');
    const stop = new AbortController();
    const got: string[] = [];
    const reading = (async () => {
      for await (const c of followLog(file, {
        fromBytes: 4,
        signal: stop.signal,
        intervalMs: 10,
      })) {
        got.push(c.toString());
        stop.abort();
      }
    })();
    await new Promise((r) => setTimeout(r, 50));
    await writeFile(file, 'first words\n');
    await reading;
    expect(got.join('')).toBe('first words\n');
  });

  it('ends at once when its signal aborts, even while waiting', async () => {
    const stop = new AbortController();
    const it = followLog('/nonexistent/headroom.log', {
      fromBytes: 1,
      signal: stop.signal,
      intervalMs: 60_000,
    });
    const next = it.next();
    setTimeout(() => stop.abort(), 20);
    expect(await next).toEqual({ done: true, value: undefined });
  });
});
