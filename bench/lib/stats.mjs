// Shared by the benches: the median of a sample and the machine a result was measured on.
import os from 'node:os';

/** The median of numbers (NaN for none). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** What a result's `machine` field records: cores, CPU, memory, Node.js and the load then. */
export function machineInfo() {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    totalMemBytes: os.totalmem(),
    node: process.version,
    loadavg: os.loadavg(),
  };
}
