import { writeFileSync } from 'node:fs';
import { underRoot } from '../monitor/io.js';
import { readOomScoreAdj } from '../monitor/reading.js';

/**
 * Makes the daemon's oom_score_adj ≤ 0, so the kernel picks a runner (500) or another program
 * before the daemon. Lowering needs CAP_SYS_RESOURCE; without it the value stays and the
 * returned figure says so (the monitor raises an alert). Returns undefined when it cannot be
 * read (not Linux). `root` prefixes /proc (tests).
 */
export function ensureDaemonOomScore(root = '/'): number | undefined {
  const cur = readOomScoreAdj('self', root);
  if (cur === undefined || cur <= 0) return cur;
  try {
    writeFileSync(underRoot(root, '/proc/self/oom_score_adj'), '0');
  } catch {
    // not permitted: reported by the caller through the value it reads back
  }
  return readOomScoreAdj('self', root);
}
