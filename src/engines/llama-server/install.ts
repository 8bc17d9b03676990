/**
 * The install hook (package.json `prepare`, after tsc): builds llama-server into the engine cache
 * when no build exists for this node-llama-cpp and machine. Progress goes to stderr. It always
 * exits 0: a failed build leaves failed.json and one line saying why, and `npm install` goes on
 * (the embedded engine works without it). HEADROOM_SKIP_ENGINE_BUILD=1 skips it.
 */
import { describeError } from '../../lib/errors.js';

const PREFIX = 'headroom: llama-server';

async function main(): Promise<void> {
  if (process.env.HEADROOM_SKIP_ENGINE_BUILD === '1') {
    process.stderr.write(`${PREFIX}: build skipped (HEADROOM_SKIP_ENGINE_BUILD=1)\n`);
    return;
  }
  const { buildLlamaServer } = await import('./builder.js');
  const { buildReporter } = await import('./report.js');
  const reporter = buildReporter(process.stderr, PREFIX);
  const r = await buildLlamaServer({ onEvent: reporter.onEvent });
  reporter.end();
  if (r.ok) {
    if (!r.reused)
      process.stderr.write(
        `${PREFIX}: built ${r.binary} (${r.manifest.how}, ${r.manifest.buildSeconds} s)\n`,
      );
    return;
  }
  process.stderr.write(
    `${PREFIX}: not built (${r.failure.reason}); install goes on without it. To fix: ${r.failure.fix}. Details: ${r.dir}/failed.json\n`,
  );
}

main().then(
  () => {
    process.exitCode = 0;
  },
  (err: unknown) => {
    process.stderr.write(
      `${PREFIX}: not built (${describeError(err)}); install goes on without it\n`,
    );
    process.exitCode = 0;
  },
);
