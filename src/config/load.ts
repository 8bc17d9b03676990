import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { HeadroomError } from '../lib/errors.js';
import { configSchema, type ParsedConfig } from './schema.js';
import { parseByteSize, parseDuration } from './units.js';

/** The normalised configuration: units resolved to numbers (bytes, milliseconds). */
export interface Config extends Omit<ParsedConfig, 'limits' | 'logs'> {
  limits: {
    maxBodyBytes: number;
    loadTimeoutMs: number;
    stallTimeoutMs: number;
    stopGraceMs: number;
  };
  logs: { maxBytes: number; keep: number };
}

export class ConfigError extends HeadroomError {
  override readonly name = 'ConfigError';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('CONFIG_INVALID', message, { status: 400, details });
  }
}

/** Renders zod issues as "key.path: what is wrong" lines. */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .map((i) => {
      const path = i.path.length > 0 ? i.path.join('.') : '(top level)';
      if (i.code === 'unrecognized_keys')
        return `${path}: unknown key(s) ${i.keys.map((k) => `"${k}"`).join(', ')}`;
      return `${path}: ${i.message}`;
    })
    .join('; ');
}

/**
 * parse → defaults → validate → normalise, in one pure function over the YAML text.
 * `source` names the file in error messages.
 */
export function loadConfig(text: string, source = 'config'): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    throw new ConfigError(`${source}: YAML syntax error: ${e.message.split('\n')[0]}`);
  }
  const raw: unknown = doc.toJS() ?? {};
  return normaliseConfig(raw, source);
}

/** Validates and normalises an already-parsed object (flags merged into the YAML, or a library caller's options). */
export function normaliseConfig(raw: unknown, source = 'config'): Config {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(
      `${source}: the top level must be a mapping of keys (host, port, modelDirs, …)`,
    );
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`${source}: ${formatIssues(parsed.error.issues)}`);
  const c = parsed.data;
  return {
    ...c,
    limits: {
      maxBodyBytes: parseByteSize(c.limits.maxBodyBytes),
      loadTimeoutMs: parseDuration(c.limits.loadTimeout),
      stallTimeoutMs: parseDuration(c.limits.stallTimeout),
      stopGraceMs: parseDuration(c.limits.stopGrace),
    },
    logs: { maxBytes: parseByteSize(c.logs.maxBytes), keep: c.logs.keep },
  };
}
