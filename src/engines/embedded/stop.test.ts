import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StopMatcher } from './stop.js';

function run(stops: string[], pieces: string[]): { out: string; stopped: boolean } {
  const m = new StopMatcher(stops);
  let out = '';
  for (const p of pieces) {
    const r = m.push(p);
    out += r.emit;
    if (r.stopped) return { out, stopped: true };
  }
  return { out: out + m.flush(), stopped: false };
}

describe('StopMatcher', () => {
  it('stops at a stop string split across pieces and drops what follows', () => {
    expect(run(['</s>'], ['hello </', 's> world'])).toEqual({ out: 'hello ', stopped: true });
  });

  it('holds back a partial match and releases it when it does not complete', () => {
    const m = new StopMatcher(['STOP']);
    expect(m.push('abcST')).toEqual({ emit: 'abc', stopped: false });
    expect(m.push('x')).toEqual({ emit: 'STx', stopped: false });
  });

  it('picks the earliest of several stop strings', () => {
    expect(run(['b', 'a'], ['xxab'])).toEqual({ out: 'xx', stopped: true });
  });

  it('passes text through unchanged without stop strings', () => {
    expect(run([], ['a', 'b'])).toEqual({ out: 'ab', stopped: false });
    expect(run([''], ['a'])).toEqual({ out: 'a', stopped: false });
  });

  it('emits exactly the text before the first stop string, however the text is split', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 40 }),
        fc.string({ minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(40), { maxLength: 6 }),
        (text, stop, cuts) => {
          const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
          const pieces: string[] = [];
          let last = 0;
          for (const p of points) {
            pieces.push(text.slice(last, p));
            last = p;
          }
          pieces.push(text.slice(last));
          const i = text.indexOf(stop);
          const expected =
            i === -1 ? { out: text, stopped: false } : { out: text.slice(0, i), stopped: true };
          expect(run([stop], pieces)).toEqual(expected);
        },
      ),
    );
  });
});
