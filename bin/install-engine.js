#!/usr/bin/env node
// npm's postinstall hook. In an installed package (`npm install headroom` in another project) it
// builds llama-server like the repository's `prepare` does (dist/engines/llama-server/install.js:
// cached per machine, never fails the install, HEADROOM_SKIP_ENGINE_BUILD=1 skips it). In a
// checkout of the repository it does nothing: `prepare` builds after tsc, and dist/ may not exist
// yet when npm runs this.
import { existsSync } from 'node:fs';

const root = new URL('..', import.meta.url);
const checkout = existsSync(new URL('tsconfig.json', root));
const hook = new URL('dist/engines/llama-server/install.js', root);
if (!checkout && existsSync(hook)) await import(hook.href);
