/** monitor/: static hardware facts and live memory readings (STYLE.md: a leaf; imports lib only). */
export { MonitorError, type MonitorErrorCode } from './io.js';
export {
  parseKbTable,
  parseMeminfo,
  readMeminfo,
  parseProcStatus,
  readProcessMemory,
  parseSmapsRollup,
  readSmapsRollup,
  parseProcStat,
  readProcessCpu,
  parseVmstat,
  readVmstat,
  parsePressure,
  readPressure,
  USER_HZ,
  type Meminfo,
  type ProcStatus,
  type ProcessMemory,
  type SmapsRollup,
  type ProcessCpu,
  type Vmstat,
  type Pressure,
  type PressureLine,
} from './proc.js';
export {
  parseProcCgroup,
  parseCgroupMounts,
  parseCgroupLimit,
  parseFlatKeyed,
  locateMemoryCgroup,
  readCgroupMemoryAt,
  readCgroupMemory,
  UNLIMITED_THRESHOLD,
  type ProcCgroupLine,
  type CgroupMount,
  type CgroupLocation,
  type CgroupMemory,
} from './cgroup.js';
export {
  parseVmStat,
  parseSysctl,
  parseMemsize,
  parseSwapUsage,
  parseMemoryPressure,
  darwinAvailable,
  darwinMemoryFrom,
  readDarwinMemory,
  type VmStat,
  type DarwinSwap,
  type DarwinMemoryPressure,
  type DarwinMemory,
} from './darwin.js';
export {
  hardwareSnapshot,
  clearHardwareCache,
  parseNvidiaSmiCsv,
  readNvidiaSmi,
  findExecutable,
  gpusFromLlama,
  NVIDIA_SMI_ARGS,
  type GpuInfo,
  type NvidiaSmiGpu,
  type LlamaVramState,
  type LlamaVramProbe,
  type HardwareSnapshot,
  type HardwareSnapshotOptions,
} from './hardware.js';
export {
  readLinuxSample,
  swapRates,
  SWAP_PAGE_SIZE,
  type LinuxMemorySample,
  type LinuxSampleOptions,
  type ProcessSample,
} from './sample.js';
export {
  monitorConfigSchema,
  DEFAULT_MONITOR_CONFIG,
  type MonitorConfig,
} from '../config/monitor.js';
export * from './pressure.js';
export { RingBuffer } from './ring.js';
export * from './sysfs.js';
export * from './trends.js';
export * from './feed.js';
export * from './reading.js';
export * from './alert-rules.js';
export * from './sampler.js';
