/**
 * The `monitor:` section of the config, with the rest of the config's schema so that imports run
 * one way (monitor → config); config/schema.ts refers to it with one line. Every option has a default, so `monitor: {}` and
 * no section at all are valid. Thresholds left out come from the memory-class preset (see
 * pressure.ts `defaultThresholds`).
 */
import { z } from 'zod';

/** A duration in ms, or a string such as "500ms", "2s". */
const intervalSchema = z.union([
  z.number().int().min(50).max(3_600_000),
  z
    .string()
    .regex(/^\d+(?:\.\d+)?\s*(ms|s|m)$/, 'an interval such as "500ms", "1s" or "1m"')
    .transform((s, ctx) => {
      const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m)$/.exec(s)!;
      const ms = Math.round(Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 's' ? 1000 : 60_000));
      if (ms < 50 || ms > 3_600_000) {
        ctx.addIssue({ code: 'custom', message: 'the interval must be between 50ms and 1h' });
        return z.NEVER;
      }
      return ms;
    }),
]);

const percent = z.number().min(0).max(100);

/** Per-level thresholds; each level left out keeps its default. */
const levelTriple = z
  .object({ medium: percent.optional(), high: percent.optional(), critical: percent.optional() })
  .strict();

export const monitorConfigSchema = z
  .object({
    enabled: z
      .boolean()
      .default(true)
      .describe('Sample memory and react to pressure. Defaults to true.'),
    interval: intervalSchema
      .default(1000)
      .describe('Time between samples: ms or "500ms", "2s". Defaults to 1s.'),
    historySize: z
      .number()
      .int()
      .min(10)
      .max(86_400)
      .default(600)
      .describe('Samples kept in the history ring buffer. Defaults to 600 (10 minutes at 1s).'),
    reactions: z
      .boolean()
      .default(true)
      .describe('Unload idle models and refuse loads under pressure. Defaults to true.'),
    cancelOnCritical: z
      .boolean()
      .default(false)
      .describe(
        'At critical pressure, cancel the lowest-priority request in flight when unloading idle models is not enough. Defaults to false.',
      ),
    lowMemory: z
      .boolean()
      .optional()
      .describe(
        'Low-memory mode: react earlier. Defaults to the memory-class preset (on for 4 GB machines).',
      ),
    optimisation: z
      .enum(['basic', 'aggressive', 'maximum'])
      .optional()
      .describe(
        'Optimisation level; aggressive and maximum react earlier. Defaults to the memory-class preset.',
      ),
    thresholds: z
      .object({
        /** Memory available, in % of capacity (RAM or cgroup limit), below which a level starts. */
        availablePercent: levelTriple
          .optional()
          .describe(
            'Memory available, in % of capacity (RAM or cgroup limit), below which each level starts.',
          ),
        /** PSI memory "some" avg10 (%), at or above which a level starts. */
        psiSome: levelTriple
          .optional()
          .describe('PSI memory "some" avg10 (%) at or above which each level starts.'),
        /** PSI memory "full" avg10 (%), at or above which a level starts. */
        psiFull: levelTriple
          .optional()
          .describe('PSI memory "full" avg10 (%) at or above which each level starts.'),
        /** Swap-in + swap-out in MiB/s at or above which medium / high start. */
        swapMiBPerSec: z
          .object({ medium: z.number().min(0).optional(), high: z.number().min(0).optional() })
          .strict()
          .optional()
          .describe('Swap-in + swap-out in MiB/s at or above which medium / high start.'),
        /** Recovery margin in % of each threshold before a level is left. Defaults to 25. */
        hysteresisPercent: z
          .number()
          .min(0)
          .max(100)
          .optional()
          .describe(
            'Recovery margin in % of each threshold before a level is left. Defaults to 25.',
          ),
        /** Consecutive calm samples before the level steps down. Defaults to 3. */
        downSamples: z
          .number()
          .int()
          .min(1)
          .max(100)
          .optional()
          .describe('Consecutive calm samples before the level steps down. Defaults to 3.'),
      })
      .strict()
      .default({})
      .describe('Pressure thresholds; each left out comes from the memory-class preset.'),
    thermal: z
      .object({
        /** Temperature (°C) at or above which a zone counts as throttling when it has no trip point. */
        throttleCelsius: z
          .number()
          .min(30)
          .max(150)
          .default(90)
          .describe(
            'Temperature (°C) at or above which a zone without a trip point counts as throttling. Defaults to 90.',
          ),
      })
      .strict()
      .default({ throttleCelsius: 90 }),
    trends: z
      .object({
        /** Length of the window a trend is fitted over, in seconds. Defaults to 300. */
        windowSeconds: z
          .number()
          .int()
          .min(10)
          .max(86_400)
          .default(300)
          .describe('Window a trend is fitted over, in seconds. Defaults to 300.'),
        /** Growth rate (MiB per minute) at or above which steady growth while idle is a leak. Defaults to 1. */
        leakMiBPerMinute: z
          .number()
          .min(0)
          .default(1)
          .describe(
            'Growth (MiB per minute) at or above which steady growth while idle is a leak. Defaults to 1.',
          ),
      })
      .strict()
      .default({ windowSeconds: 300, leakMiBPerMinute: 1 }),
  })
  .strict();

export type MonitorConfigInput = z.input<typeof monitorConfigSchema>;
export type MonitorConfig = z.output<typeof monitorConfigSchema>;

/** The defaults, as a value (for `monitor: <schema>.default(...)` and for library callers). */
export const DEFAULT_MONITOR_CONFIG: MonitorConfig = monitorConfigSchema.parse({});
