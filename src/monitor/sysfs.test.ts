import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { locateSysfsGpus, locateThermal, readSysfsGpus, readThermal } from './sysfs.js';

const FIX = fileURLToPath(new URL('../../test/fixtures/monitor/thermal', import.meta.url));
const tmpDirs: string[] = [];
afterAll(async () => {
  for (const d of tmpDirs) await rm(d, { recursive: true, force: true });
});

/** A writable copy of the fixture tree, so a test can change a sensor between readings. */
async function copyTree(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-thermal-'));
  tmpDirs.push(dir);
  await cp(FIX, dir, { recursive: true });
  return dir;
}

describe('thermal', () => {
  it('locates zones with their lowest passive trip, CPU cooling devices and one counter per package', () => {
    const s = locateThermal(FIX);
    expect(s.zones.map((z) => [z.type, z.tripCelsius])).toEqual([
      ['x86_pkg_temp', 95],
      ['acpitz', undefined],
      ['iwlwifi_1', undefined],
    ]);
    expect(s.cooling.map((f) => path.basename(path.dirname(f)))).toEqual(['cooling_device0']);
    expect(s.throttleCounters).toHaveLength(1);
  });

  it('reads temperatures, drops broken sensors, and flags a zone over its trip point', () => {
    const { reading, counts } = readThermal(locateThermal(FIX), undefined);
    expect(reading.maxCelsius).toBe(97);
    expect(reading.zones).toEqual([
      { type: 'x86_pkg_temp', celsius: 97 },
      { type: 'acpitz', celsius: 45 },
    ]);
    expect(reading.throttled).toBe(true);
    expect(reading.reasons).toEqual(['x86_pkg_temp 97°C ≥ trip 95°C']);
    expect(counts).toEqual([12]);
  });

  it('flags a rising throttle counter and a busy CPU cooling device; a cool machine is not throttled', async () => {
    const root = await copyTree();
    const zone0 = path.join(root, 'sys/class/thermal/thermal_zone0/temp');
    await writeFile(zone0, '60000\n');
    const sensors = locateThermal(root);
    const first = readThermal(sensors, undefined);
    expect(first.reading.throttled).toBe(false);
    await writeFile(
      path.join(root, 'sys/devices/system/cpu/cpu0/thermal_throttle/package_throttle_count'),
      '15\n',
    );
    await writeFile(path.join(root, 'sys/class/thermal/cooling_device0/cur_state'), '2\n');
    const second = readThermal(sensors, first.counts);
    expect(second.reading.reasons).toEqual([
      'CPU cooling device at state 2 (cooling_device0)',
      'CPU throttled 3 time(s) since the last sample',
    ]);
    // A zone without a trip point throttles at the configured limit.
    await writeFile(path.join(root, 'sys/class/thermal/thermal_zone1/temp'), '88000\n');
    expect(readThermal(sensors, second.counts, 85).reading.reasons[0]).toBe(
      'acpitz 88°C ≥ limit 85°C',
    );
  });

  it('reads nothing, and no throttling, where there are no sensors', () => {
    const s = locateThermal('/nonexistent-root');
    expect(s).toEqual({ zones: [], cooling: [], throttleCounters: [] });
    expect(readThermal(s, []).reading).toEqual({ zones: [], throttled: false, reasons: [] });
  });
});

describe('amdgpu VRAM', () => {
  it('finds cards with VRAM counters only and reads them', () => {
    const gpus = locateSysfsGpus(FIX);
    expect(gpus.map((g) => g.name)).toEqual(['AMD Radeon RX 7900 XTX']);
    expect(readSysfsGpus(gpus)).toEqual([
      { index: 0, name: 'AMD Radeon RX 7900 XTX', total: 17163091968, used: 4294967296 },
    ]);
  });
});
