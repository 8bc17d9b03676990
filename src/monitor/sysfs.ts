/**
 * Temperatures, CPU throttling and GPU memory from sysfs: located once (which files exist is
 * static), read per sample (one small file per sensor, no process spawned).
 *
 * Thermal: /sys/class/thermal/thermal_zone* (temp in millidegrees Celsius, trip points),
 * /sys/class/thermal/cooling_device* of CPU types (cur_state > 0: the CPU is held back), and
 * Intel's /sys/devices/system/cpu/cpu* /thermal_throttle/package_throttle_count (a counter that
 * rises while throttled). Virtual machines usually have none of them: the reading is then empty
 * and never "throttled".
 *
 * GPU memory: amdgpu exposes VRAM in sysfs (/sys/class/drm/card* /device/mem_info_vram_*).
 * NVIDIA does not; its memory comes from an injected probe at a slower cadence (see sampler.ts).
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { readOptionalSync, underRoot } from './io.js';

function list(dir: string): string[] {
  try {
    return readdirSync(dir).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  } catch {
    return [];
  }
}

function readInt(file: string): number | undefined {
  let text: string | undefined;
  try {
    text = readOptionalSync(file);
  } catch {
    return undefined; // EACCES, EIO (a sensor that fails to read, as some ACPI zones do)
  }
  if (text === undefined) return undefined;
  const n = Number(text.trim());
  return text.trim() !== '' && Number.isFinite(n) ? n : undefined;
}

function readText(file: string): string | undefined {
  try {
    return readOptionalSync(file)?.trim();
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Thermal

export interface ThermalZone {
  /** The zone's `type` ("x86_pkg_temp", "acpitz", "cpu-thermal"). */
  type: string;
  tempFile: string;
  /** The lowest passive (or hot) trip point, °C: the kernel starts throttling there. */
  tripCelsius?: number;
}

export interface ThermalSensors {
  zones: ThermalZone[];
  /** cur_state files of CPU cooling devices. */
  cooling: string[];
  /** package_throttle_count files, one per CPU package. */
  throttleCounters: string[];
}

const CPU_COOLING = /^(processor|intel_powerclamp|cpufreq|thermal-cpufreq)/i;

/** Finds the sensors once. An empty result (a VM) is normal. */
export function locateThermal(root = '/'): ThermalSensors {
  const tdir = underRoot(root, '/sys/class/thermal');
  const zones: ThermalZone[] = [];
  const cooling: string[] = [];
  for (const name of list(tdir)) {
    const dir = path.join(tdir, name);
    if (name.startsWith('thermal_zone')) {
      const type = readText(path.join(dir, 'type')) ?? name;
      let trip: number | undefined;
      for (let i = 0; i < 32; i++) {
        const kind = readText(path.join(dir, `trip_point_${i}_type`));
        if (kind === undefined) break;
        if (kind !== 'passive' && kind !== 'hot') continue;
        const t = readInt(path.join(dir, `trip_point_${i}_temp`));
        if (t !== undefined && t > 0 && (trip === undefined || t / 1000 < trip)) trip = t / 1000;
      }
      zones.push({
        type,
        tempFile: path.join(dir, 'temp'),
        ...(trip === undefined ? {} : { tripCelsius: trip }),
      });
    } else if (name.startsWith('cooling_device')) {
      const type = readText(path.join(dir, 'type')) ?? '';
      if (CPU_COOLING.test(type)) cooling.push(path.join(dir, 'cur_state'));
    }
  }
  const cdir = underRoot(root, '/sys/devices/system/cpu');
  const packages = new Set<string>();
  const throttleCounters: string[] = [];
  for (const name of list(cdir)) {
    if (!/^cpu\d+$/.test(name)) continue;
    const file = path.join(cdir, name, 'thermal_throttle', 'package_throttle_count');
    if (readInt(file) === undefined) continue;
    const pkg = readText(path.join(cdir, name, 'topology', 'physical_package_id')) ?? name;
    if (packages.has(pkg)) continue;
    packages.add(pkg);
    throttleCounters.push(file);
  }
  return { zones, cooling, throttleCounters };
}

export interface ThermalReading {
  /** The hottest zone, °C; undefined without sensors. */
  maxCelsius?: number;
  zones: Array<{ type: string; celsius: number }>;
  throttled: boolean;
  /** Why it reads as throttled ("x86_pkg_temp 97°C ≥ trip 95°C"). */
  reasons: string[];
}

/**
 * Reads the sensors. `prevCounts` are the throttle counters of the previous reading (the
 * returned `counts` are the next call's): a counter that rose means the CPU throttled in between.
 * A zone without a trip point counts as throttling at `throttleCelsius`.
 */
export function readThermal(
  sensors: ThermalSensors,
  prevCounts: readonly number[] | undefined,
  throttleCelsius = 90,
): { reading: ThermalReading; counts: number[] } {
  const zones: ThermalReading['zones'] = [];
  const reasons: string[] = [];
  let max: number | undefined;
  for (const z of sensors.zones) {
    const milli = readInt(z.tempFile);
    // Some drivers report a negative or absurd value for an absent sensor.
    if (milli === undefined || milli <= -40_000 || milli > 200_000) continue;
    const celsius = milli / 1000;
    zones.push({ type: z.type, celsius });
    if (max === undefined || celsius > max) max = celsius;
    const limit = z.tripCelsius ?? throttleCelsius;
    if (celsius >= limit)
      reasons.push(
        `${z.type} ${celsius.toFixed(0)}°C ≥ ${z.tripCelsius === undefined ? 'limit' : 'trip'} ${limit.toFixed(0)}°C`,
      );
  }
  for (const f of sensors.cooling) {
    const state = readInt(f);
    if (state !== undefined && state > 0)
      reasons.push(`CPU cooling device at state ${state} (${path.basename(path.dirname(f))})`);
  }
  const counts = sensors.throttleCounters.map((f) => readInt(f) ?? 0);
  if (prevCounts && prevCounts.length === counts.length) {
    const rose = counts.reduce((n, c, i) => n + Math.max(0, c - prevCounts[i]!), 0);
    if (rose > 0) reasons.push(`CPU throttled ${rose} time(s) since the last sample`);
  }
  return {
    reading: {
      ...(max === undefined ? {} : { maxCelsius: max }),
      zones,
      throttled: reasons.length > 0,
      reasons,
    },
    counts,
  };
}

// ---------------------------------------------------------------------------------------------
// GPU memory (amdgpu sysfs)

export interface SysfsGpu {
  index: number;
  name: string;
  totalFile: string;
  usedFile: string;
}

export interface GpuMemory {
  index: number;
  name: string;
  total: number;
  used: number;
}

/** Finds amdgpu cards with VRAM counters (once). */
export function locateSysfsGpus(root = '/'): SysfsGpu[] {
  const dir = underRoot(root, '/sys/class/drm');
  const out: SysfsGpu[] = [];
  for (const name of list(dir)) {
    if (!/^card\d+$/.test(name)) continue;
    const dev = path.join(dir, name, 'device');
    const totalFile = path.join(dev, 'mem_info_vram_total');
    if (readInt(totalFile) === undefined) continue;
    out.push({
      index: out.length,
      name: readText(path.join(dev, 'product_name')) || `${name} (amdgpu)`,
      totalFile,
      usedFile: path.join(dev, 'mem_info_vram_used'),
    });
  }
  return out;
}

export function readSysfsGpus(gpus: readonly SysfsGpu[]): GpuMemory[] {
  const out: GpuMemory[] = [];
  for (const g of gpus) {
    const total = readInt(g.totalFile);
    const used = readInt(g.usedFile);
    if (total !== undefined && used !== undefined)
      out.push({ index: g.index, name: g.name, total, used });
  }
  return out;
}
