import { z } from 'zod';
import { configSchema } from './schema.js';

/**
 * The published forms of the config schema, generated from the zod schema (the single source):
 * the JSON schema editors validate `config.yaml` with (docs/config.schema.json) and the config
 * reference (docs/CONFIG.md). `npm run docs` writes both; reference.test.ts fails when either
 * file differs from what this module generates.
 */

export const CONFIG_SCHEMA_ID =
  'https://github.com/headroom-llm/headroom/blob/main/docs/config.schema.json';

type JsonSchema = {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  const?: unknown;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minLength?: number;
  minItems?: number;
  properties?: Record<string, JsonSchema>;
  additionalProperties?: JsonSchema | boolean;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  propertyNames?: JsonSchema;
  [key: string]: unknown;
};

/** The JSON schema of `config.yaml` (draft 2020-12), as the file accepts it: every key optional. */
export function configJsonSchema(): Record<string, unknown> {
  const generated = z.toJSONSchema(configSchema, {
    io: 'input',
    unrepresentable: 'any',
  }) as JsonSchema;
  const { $schema, ...rest } = generated;
  return {
    $schema,
    $id: CONFIG_SCHEMA_ID,
    title: 'headroom config.yaml',
    description:
      'Configuration of the headroom daemon ($HEADROOM_HOME/config.yaml). Every key is optional. Generated from src/config/schema.ts by `npm run docs`.',
    ...rest,
  };
}

/** The file's text: the schema as 2-space JSON with a final newline. */
export function configJsonSchemaText(): string {
  return JSON.stringify(configJsonSchema(), null, 2) + '\n';
}

/** One line of the reference: a key's dotted path and what it takes. */
export interface ReferenceRow {
  key: string;
  type: string;
  default: string;
  description: string;
}

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' \\| ');
  if (s.const !== undefined) return JSON.stringify(s.const);
  const alts = s.anyOf ?? s.oneOf;
  if (alts) return [...new Set(alts.map(typeOf))].join(' \\| ');
  if (s.type === 'array') return `list of ${s.items ? typeOf(s.items) : 'any'}`;
  if (s.type === 'integer') {
    const lo = s.minimum;
    const hi =
      s.maximum !== undefined && s.maximum < Number.MAX_SAFE_INTEGER ? s.maximum : undefined;
    if (lo !== undefined && hi !== undefined) return `integer ${lo}–${hi}`;
    if (lo !== undefined) return `integer ≥ ${lo}`;
    return 'integer';
  }
  if (s.type === 'number') {
    const lo =
      s.exclusiveMinimum !== undefined
        ? `> ${s.exclusiveMinimum}`
        : s.minimum !== undefined
          ? `≥ ${s.minimum}`
          : '';
    const hi = s.maximum !== undefined ? `≤ ${s.maximum}` : '';
    return ['number', lo, hi].filter(Boolean).join(' ');
  }
  if (s.type === 'string' && s.pattern) return 'string';
  if (Array.isArray(s.type)) return s.type.join(' \\| ');
  return s.type ?? 'any';
}

/** A string pattern's own message is not in the JSON schema; name the unit kinds by their pattern. */
function unitOf(s: JsonSchema): string | undefined {
  const alts = s.anyOf ?? s.oneOf ?? [];
  const pat = alts.find((a) => a.pattern)?.pattern ?? s.pattern;
  if (!pat) return undefined;
  if (pat.includes('ms|s|m|h|d')) return 'duration ("500ms", "30s", "5m", "1h", "never") or ms';
  if (pat.includes('KiB')) return 'size ("512MiB", "8GB") or bytes';
  if (pat.includes('ms|s|m')) return 'interval ("500ms", "1s") or ms';
  return undefined;
}

function escape(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** Every key of the config, depth first, with its type, default and description. */
export function referenceRows(): ReferenceRow[] {
  const rows: ReferenceRow[] = [];
  const visit = (key: string, s: JsonSchema): void => {
    const isObject = s.type === 'object' && (s.properties || s.additionalProperties);
    if (key) {
      rows.push({
        key,
        type: isObject ? 'mapping' : (unitOf(s) ?? typeOf(s)),
        default:
          s.default === undefined || (isObject && typeof s.default === 'object')
            ? ''
            : JSON.stringify(s.default),
        description: escape(s.description ?? ''),
      });
    }
    for (const [k, child] of Object.entries(s.properties ?? {}))
      visit(key ? `${key}.${k}` : k, child);
    if (typeof s.additionalProperties === 'object') visit(`${key}.<name>`, s.additionalProperties);
  };
  visit('', configJsonSchema() as JsonSchema);
  return rows;
}

/** docs/CONFIG.md's text. */
export function configReferenceMarkdown(): string {
  const lines = [
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/schema.ts by `npm run docs`; do not edit by hand. -->',
    '',
    'headroom reads `$HEADROOM_HOME/config.yaml` (or `headroom serve --config FILE`). Every key is',
    'optional; an empty file is a valid config. `headroom config validate [FILE]` checks a file and',
    'names each key that is wrong. Editors validate the file with the JSON schema',
    '`docs/config.schema.json`: with the YAML language server, put',
    '`# yaml-language-server: $schema=<path or URL of config.schema.json>` on its first line.',
    '',
    'Sizes take units (`512MiB`, `8GB`, or a number of bytes); durations too (`500ms`, `30s`,',
    '`5m`, `1h`, `never`, or a number of milliseconds). `docs/GUIDE.md` explains the memory',
    'settings with examples; `docs/config.example.yaml` is a commented example.',
    '',
    '| key | type | default | description |',
    '| --- | --- | --- | --- |',
    ...referenceRows().map(
      (r) =>
        `| \`${r.key}\` | ${r.type} | ${r.default ? `\`${escape(r.default)}\`` : ''} | ${r.description} |`,
    ),
    '',
  ];
  return lines.join('\n');
}
