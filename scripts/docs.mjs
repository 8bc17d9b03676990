// Writes the generated docs from the built sources (run `npm run docs`, which builds first):
// docs/config.schema.json and docs/CONFIG.md from the config's zod schema, docs/openapi.json from
// the HTTP routes' schemas. Tests beside the generators fail when a file is out of date.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { configJsonSchemaText, configReferenceMarkdown } from '../dist/config/reference.js';
import { VERSION } from '../dist/daemon/headroom.js';
import { openApiText } from '../dist/server/openapi.js';

const docs = path.join(import.meta.dirname, '..', 'docs');
const files = {
  'config.schema.json': configJsonSchemaText(),
  'CONFIG.md': configReferenceMarkdown(),
  'openapi.json': openApiText(VERSION),
};
for (const [name, text] of Object.entries(files)) {
  await writeFile(path.join(docs, name), text);
  console.log(`wrote docs/${name}`);
}
