import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/load.js';
import { parseByteSize } from '../config/units.js';
import type { ModelEntry } from '../scheduler/types.js';
import { expandHome, type DiscoveredModel } from './discover.js';

/**
 * Finds the models the daemon can serve: every `*.gguf` under the model directories (name =
 * file stem; split files `x-00001-of-00003.gguf` count once, as `x`) plus the models named in
 * the config with a `path`. Names map to files; a name is never turned into a path, so a
 * request cannot reach a file outside the model directories.
 */

const MAX_DEPTH = 4;
const SPLIT_RE = /^(.*)-(\d{5})-of-(\d{5})$/;

export interface CatalogScan {
  entries: Map<string, ModelEntry>;
  /** Human-readable problems (duplicates, unreadable directories). */
  warnings: string[];
}

export async function scanModels(
  dirs: readonly string[],
  config: Pick<Config, 'models'>,
  baseDir: string,
  /** Models found in other tools' stores (discover.ts), after headroom's own. */
  discovered: readonly DiscoveredModel[] = [],
): Promise<CatalogScan> {
  const entries = new Map<string, ModelEntry>();
  const warnings: string[] = [];
  const add = (name: string, file: string): void => {
    const existing = entries.get(name);
    if (existing) {
      if (existing.path !== file) {
        warnings.push(
          `Two models are named "${name}": ${existing.path} and ${file}; serving the first. Rename one file to serve both.`,
        );
      }
      return;
    }
    entries.set(name, { name, path: file, overrides: {} });
  };

  for (const [name, m] of Object.entries(config.models)) {
    if (m.path) add(name, path.resolve(baseDir, m.path));
    // A command needs no model file: its path, when given, is only what ${MODEL} becomes.
    else if (m.command) add(name, '');
  }
  for (const dir of dirs) {
    await walk(path.resolve(baseDir, expandHome(dir)), 0, add, warnings);
  }
  for (const d of discovered) {
    const existing = entries.get(d.name);
    if (existing) {
      if (existing.path !== d.path)
        warnings.push(
          `Two models are named "${d.name}": ${existing.path} and ${d.path} (${d.source}); serving the first.`,
        );
      continue;
    }
    entries.set(d.name, {
      name: d.name,
      path: d.path,
      overrides: {},
      source: { kind: d.source, store: d.store },
    });
  }
  for (const [name, m] of Object.entries(config.models)) {
    const entry = entries.get(name);
    // ttl, pin and contextOverflow are daemon policy, not runner settings.
    const {
      path: _p,
      kvCacheType,
      ttl: _t,
      pin: _pin,
      contextOverflow: _o,
      command,
      health,
      memory,
      ...rest
    } = m;
    if (!entry) {
      warnings.push(
        `models.${name} is configured but no file named ${name}.gguf was found in the model directories.`,
      );
      continue;
    }
    entry.overrides = {
      ...rest,
      ...(kvCacheType ? { kvCacheKeyType: kvCacheType, kvCacheValueType: kvCacheType } : {}),
      // A model given as a command runs on the command engine unless it names another.
      ...(command
        ? {
            engine: rest.engine ?? 'command',
            command: {
              argv: command,
              health: health ?? '/health',
              ...(memory !== undefined ? { memoryBytes: parseByteSize(memory) } : {}),
            },
          }
        : {}),
    };
  }
  return { entries, warnings };
}

async function walk(
  dir: string,
  depth: number,
  add: (name: string, file: string) => void,
  warnings: string[],
): Promise<void> {
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (depth === 0)
      warnings.push(`Model directory ${dir} cannot be read (${code ?? String(err)}).`);
    return;
  }
  for (const n of names) {
    if (n.startsWith('.')) continue;
    const file = path.join(dir, n);
    let st;
    try {
      st = await stat(file);
    } catch {
      continue; // a dangling link or a file removed while scanning
    }
    if (st.isDirectory()) {
      if (depth < MAX_DEPTH) await walk(file, depth + 1, add, warnings);
      continue;
    }
    if (!st.isFile() || !n.toLowerCase().endsWith('.gguf')) continue;
    let stem = n.slice(0, -'.gguf'.length);
    const split = SPLIT_RE.exec(stem);
    if (split) {
      if (split[2] !== '00001') continue;
      stem = split[1]!;
    }
    add(stem, file);
  }
}
