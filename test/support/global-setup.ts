// Runs once before the suite: builds the x86_64 pg_dump layer when missing (about 30 s), so every
// test that spawns pg_dump finds it. The arm64 layer is built only by the tests that need it, and
// so is the pg-server layer (ensureServerLayer, 1.5 to 6 minutes when missing): a targeted run of
// an unrelated test file never waits for it.
import { ensureCliBundle } from '../../scripts/cli-bundle.mjs';
import { ensureLayer } from './layer.ts';

export default async function setup(): Promise<void> {
  // The CLI bundle too (npm ci's prepare builds it; a changed source rebuilds it): one build before
  // the test files that spawn the CLI start, rather than one race per file.
  await Promise.all([ensureLayer('x86_64'), ensureCliBundle({ clean: true })]);
}
