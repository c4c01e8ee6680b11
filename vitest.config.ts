import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start real PostgreSQL and S3 API servers; give them room on 2-core machines.
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Files run in separate processes, two at a time at most (2 cores, each file may run its own servers).
    pool: 'forks',
    maxWorkers: 2,
    globalSetup: ['test/support/global-setup.ts'],
    setupFiles: ['test/support/cdk-outdir.ts'],
    reporters: ['default'],
  },
});
