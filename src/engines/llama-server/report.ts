import { progressBar, progressPercent, type Progress } from './build.js';
import type { BuildEvent } from './builder.js';

/**
 * Shows a build's events to a person on a stream (stderr): on a terminal one bar redrawn in place,
 * otherwise plain lines (each phase, then every 10 % of the compile), so a log stays short.
 */
export function buildReporter(
  out: NodeJS.WritableStream & { isTTY?: boolean },
  prefix = 'llama-server',
): { onEvent: (e: BuildEvent) => void; end: () => void } {
  const tty = out.isTTY === true;
  let barShown = false;
  let lastTenth = -1;
  let how = '';
  const line = (text: string): void => {
    if (barShown) out.write('\n');
    barShown = false;
    out.write(`${prefix}: ${text}\n`);
  };
  const progress = (p: Progress): void => {
    if (tty) {
      out.write(`\r${prefix}: compiling ${progressBar(p)}`);
      barShown = true;
      return;
    }
    const tenth = Math.floor(progressPercent(p) / 10);
    if (tenth > lastTenth) {
      lastTenth = tenth;
      line(`compiling ${progressPercent(p)}%${'done' in p ? ` (${p.done}/${p.total})` : ''}`);
    }
  };
  return {
    onEvent: (e) => {
      switch (e.type) {
        case 'cached':
          line(`already built in ${e.dir}`);
          break;
        case 'waiting':
          line(
            `another build of the same version is running${e.owner ? ` (pid ${e.owner.pid})` : ''}; waiting for it`,
          );
          break;
        case 'start':
          how = e.how;
          line(
            `building llama.cpp ${e.tag} for ${e.backend} (${e.how}); this usually takes ${e.estimate} here. Output: ${e.key}`,
          );
          break;
        case 'phase':
          how = e.how;
          lastTenth = -1;
          if (e.phase !== 'compile') line(`${e.phase}${e.phase === 'check' ? '' : ` (${how})`}`);
          break;
        case 'progress':
          progress(e.progress);
          break;
        case 'fallback':
          line(`${e.from} failed (${e.reason}); trying ${e.to}`);
          break;
      }
    },
    end: () => {
      if (barShown) out.write('\n');
      barShown = false;
    },
  };
}
