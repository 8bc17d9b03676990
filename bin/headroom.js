#!/usr/bin/env node
// The CLI entry: runs the compiled CLI (npm install builds dist/ through the prepare script).
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`headroom: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  },
);
