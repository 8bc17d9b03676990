import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

// The shape of src/'s imports: no cycles between files or between folders, and dynamic imports
// (which the lint rule does not see) within the boundaries of eslint.config.js.

const ROOT = path.resolve(import.meta.dirname, '..');
const SRC = path.join(ROOT, 'src');

interface Edge {
  from: string;
  to: string;
  typeOnly: boolean;
  dynamic: boolean;
}

const IMPORT_RE =
  /^\s*(?:import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?['"](\.{1,2}\/[^'"]+)['"]/gm;
const DYNAMIC_RE = /\bimport\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

/** Every import between production files of src/ (relative paths, `.js` → `.ts`). */
function edges(): Edge[] {
  const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter(
    (f) => f.endsWith('.ts') && !f.endsWith('.test.ts'),
  );
  const out: Edge[] = [];
  const resolve = (from: string, spec: string): string =>
    path.relative(SRC, path.resolve(SRC, path.dirname(from), spec)).replace(/\.js$/, '.ts');
  for (const from of files) {
    const text = readFileSync(path.join(SRC, from), 'utf8');
    for (const m of text.matchAll(IMPORT_RE))
      out.push({ from, to: resolve(from, m[2]!), typeOnly: m[1] !== undefined, dynamic: false });
    for (const m of text.matchAll(DYNAMIC_RE))
      out.push({ from, to: resolve(from, m[1]!), typeOnly: false, dynamic: true });
  }
  return out;
}

/** The folder of src/ a file belongs to; files at the top are their own. */
const folderOf = (file: string): string =>
  file.includes(path.sep) ? file.split(path.sep)[0]! : file;

/** The cycles of a graph: its strongly connected components with more than one node (Tarjan). */
function cycles(nodes: Iterable<string>, next: (n: string) => string[]): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of next(v)) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) found.push(scc.sort());
    }
  };
  for (const n of nodes) if (!idx.has(n)) visit(n);
  return found;
}

function graph(list: Edge[], key: (f: string) => string): Map<string, Set<string>> {
  const g = new Map<string, Set<string>>();
  for (const e of list) {
    const a = key(e.from);
    const b = key(e.to);
    if (a === b) continue;
    if (!g.has(a)) g.set(a, new Set());
    g.get(a)!.add(b);
  }
  return g;
}

describe('imports of src/', () => {
  const all = edges();

  it('finds the imports (a guard against a pattern that matches nothing)', () => {
    expect(all.length).toBeGreaterThan(200);
    expect(all.some((e) => e.dynamic && e.from === path.join('cli', 'main.ts'))).toBe(true);
    expect(all.some((e) => e.typeOnly)).toBe(true);
  });

  it('has no cycle between files (type-only imports aside: they vanish at run time)', () => {
    const g = graph(
      all.filter((e) => !e.typeOnly),
      (f) => f,
    );
    expect(cycles(g.keys(), (n) => [...(g.get(n) ?? [])])).toEqual([]);
  });

  it('has no cycle between folders, type imports included', () => {
    const g = graph(all, folderOf);
    expect(cycles(g.keys(), (n) => [...(g.get(n) ?? [])])).toEqual([]);
  });

  it("keeps dynamic imports within the folders' boundaries", async () => {
    const { boundaries } = (await import(
      pathToFileURL(path.join(ROOT, 'eslint.config.js')).href
    )) as {
      boundaries: Record<string, { values: string[] }>;
    };
    const crossing = all
      .filter((e) => e.dynamic)
      .filter((e) => {
        const a = folderOf(e.from);
        const b = folderOf(e.to);
        const rule = boundaries[a];
        // main.ts, index.ts and daemon/ are the composition root; cli/serve starts it (main.ts).
        return rule !== undefined && a !== b && !rule.values.includes(b) && b !== 'main.ts';
      })
      .map((e) => `${e.from} → ${e.to}`);
    expect(crossing).toEqual([]);
  });
});
