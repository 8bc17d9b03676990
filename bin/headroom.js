#!/usr/bin/env -S node --max-semi-space-size=2
// The CLI entry: runs the compiled CLI (npm install builds dist/ through the prepare script).
// --max-semi-space-size=2: the daemon allocates short-lived request objects; V8's default
// semi-spaces (up to 16 MiB each) cost ~6 MiB of idle RSS for no measurable speed here.
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
