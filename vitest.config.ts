import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defineConfig, type TestProjectInlineConfiguration } from 'vitest/config';

/**
 * The test tiers. `npm test` runs all four; each has its own script (`npm run test:unit`, …).
 *
 * - unit: files that start no service, spawn no program and synthesize no CDK app. They need no
 *   global set-up (no layer build, no CLI bundle), so `npx vitest --project unit` runs in seconds
 *   and is usable with `--watch`.
 * - infra: test/infra/ (CDK templates, the IAM simulator, the Fargate image tree).
 * - layers: test/layers/ (the built pg_dump and pg-server layers themselves).
 * - integration: everything else (real PostgreSQL, moto, the CLI as a process).
 *
 * A file is unit by what it imports, so a new test lands in the right tier without a list to keep:
 * importing a service-starting support module, a process API, the CDK or a script makes it an
 * integration test.
 */
const HEAVY_IMPORT = new RegExp(
  [
    String.raw`/support/[a-z-]+`,
    String.raw`'node:child_process'`,
    String.raw`'aws-cdk-lib`,
    String.raw`/scripts/`,
    String.raw`/infra/(?:app|backup-stack|constructs/)`,
  ].join('|'),
);

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.test.ts'))
    .map((e) => join(e.parentPath, e.name));
}

const IN = (folder: string) => (file: string) => file.startsWith(`test/${folder}/`);
const all = testFiles('test').sort();
const unit = all.filter((f) => !IN('infra')(f) && !IN('layers')(f) && !IN('support')(f) && !HEAVY_IMPORT.test(readFileSync(f, 'utf8')));
const infra = all.filter(IN('infra'));
const layers = all.filter(IN('layers'));
const integration = all.filter((f) => !unit.includes(f) && !infra.includes(f) && !layers.includes(f));

// Builds the x86_64 pg_dump layer and the CLI bundle once, before the first file of a tier that
// spawns them (unit never does).
const withServices = {
  globalSetup: ['test/support/global-setup.ts'],
  // Integration tests start real PostgreSQL and S3 API servers; give them room on 2-core machines.
  testTimeout: 120_000,
  hookTimeout: 300_000,
};

const tier = (name: string, include: string[], extra: TestProjectInlineConfiguration['test'] = {}): TestProjectInlineConfiguration => ({
  extends: true,
  test: { name, include, ...extra },
});

export default defineConfig({
  test: {
    // Files run in separate processes, two at a time at most (2 cores, each file may run its own servers).
    pool: 'forks',
    maxWorkers: 2,
    setupFiles: ['test/support/cdk-outdir.ts'],
    reporters: ['default'],
    projects: [
      tier('unit', unit, { testTimeout: 10_000 }),
      tier('integration', integration, withServices),
      tier('infra', infra, withServices),
      tier('layers', layers, withServices),
    ],
  },
});
