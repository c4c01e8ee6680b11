// Runs once before the suite: builds the x86_64 pg_dump layer when missing (about 30 s), so every
// test that spawns pg_dump finds it. The arm64 layer is built only by the tests that need it, and
// so is the pg-server layer (ensureServerLayer, 1.5 to 6 minutes when missing): a targeted run of
// an unrelated test file never waits for it.
import { ensureLayer } from './layer.ts';

export default async function setup(): Promise<void> {
  await ensureLayer('x86_64');
}
