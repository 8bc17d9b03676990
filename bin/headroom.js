#!/usr/bin/env -S node --max-semi-space-size=1 --v8-pool-size=1
// The CLI entry: runs the compiled CLI (npm install builds dist/ through the prepare script).
// V8 flags: the daemon makes short-lived request objects and is mostly idle; a 1 MiB young
// generation and one V8 worker thread cut idle RSS from 86 to 75 MB (bench:monitor) at no
// measured cost to streaming (bench:stream-overhead).
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
