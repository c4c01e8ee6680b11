// Runs once before the suite: builds the x86_64 pg_dump layer when missing (about 30 s), so every
// test that spawns pg_dump finds it. The arm64 layer is built only by the tests that need it.
import { ensureLayer } from './layer.ts';

export default async function setup(): Promise<void> {
  await ensureLayer('x86_64');
}
