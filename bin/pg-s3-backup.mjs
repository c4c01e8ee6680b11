#!/usr/bin/env -S node --max-semi-space-size=1
// node's options: infra/node-options.ts (why; `env -S` splits them: coreutils 8.30+, BSD/macOS env).
// The `pg-s3-backup` command (package.json `bin`): runs the prebuilt CLI bundle (dist/cli, built
// by `npm ci`'s prepare step), rebuilding it first when a source changed since (scripts/cli-bundle.mjs).
// No TypeScript loader at run time.
import { ensureCliBundle } from '../scripts/cli-bundle.mjs';

let entry;
try {
  entry = await ensureCliBundle();
} catch (err) {
  // No bundle and no esbuild to build it: say what to do, not a stack trace.
  process.stderr.write(`${err.message}\n`);
  process.exit(1);
}
await import(entry);
