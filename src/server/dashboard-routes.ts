/**
 * The web dashboard's static files: `/` (index.html) and `/ui/<file>` (its modules, styles and
 * the uPlot chart library from its installed package). Nothing is fetched from the network: the
 * page's files ship in the package (src/dashboard, copied to dist/dashboard by the build).
 *
 * Contract: only the files listed when the app is built are served, by exact name (no path from
 * the URL ever reaches the file system); each is read once and kept (they are small, ~100 KB in
 * all). The page reads data only through the admin API, so these routes carry no data.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { NotFoundError } from './errors.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** Same-origin only; uPlot sizes its elements through `element.style`, hence inline styles. */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Where the page's files are: beside this module's folder (src/dashboard or dist/dashboard). */
export const DASHBOARD_DIR = path.resolve(import.meta.dirname, '../dashboard');

/** The files served under /ui/: the page's own, and uPlot's script and stylesheet. */
export function dashboardFiles(dir = DASHBOARD_DIR): Map<string, string> {
  const files = new Map<string, string>();
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    // A package built without the dashboard: `/` answers 404 with a hint.
  }
  for (const name of names)
    if (TYPES[path.extname(name)] !== undefined && !name.endsWith('.test.js'))
      files.set(name, path.join(dir, name));
  const require = createRequire(import.meta.url);
  try {
    const uplot = path.dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
    files.set('uplot.js', path.join(uplot, 'uPlot.iife.min.js'));
    files.set('uplot.css', path.join(uplot, 'uPlot.min.css'));
  } catch {
    // uplot missing from node_modules: the page says the chart is unavailable.
  }
  return files;
}

export function dashboardRoutes(app: FastifyInstance, dir = DASHBOARD_DIR): void {
  const files = dashboardFiles(dir);
  const cache = new Map<string, Buffer>();
  const send = (reply: FastifyReply, name: string): Buffer => {
    const file = files.get(name);
    if (file === undefined)
      throw new NotFoundError(
        name === 'index.html'
          ? `The dashboard's files are missing from ${dir}; reinstall headroom (npm run build copies them).`
          : `No dashboard file /ui/${name}.`,
        'unknown_route',
      );
    let body = cache.get(name);
    if (body === undefined) {
      body = readFileSync(file);
      cache.set(name, body);
    }
    void reply
      .type(TYPES[path.extname(name)] ?? 'application/octet-stream')
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', CSP);
    return body;
  };
  app.get('/', async (_req, reply) => send(reply, 'index.html'));
  app.get('/ui/:file', async (req, reply) => send(reply, (req.params as { file: string }).file));
}
