// Runs once before the suite: builds the x86_64 pg_dump layer when missing (about 30 s), so every
// test that spawns pg_dump finds it, then the x86_64 pg-server layer (the drill's throwaway server,
// 1.5 to 5 minutes when missing), so the test files that need it do not each wait for one build.
// The arm64 layers are built only by the tests that need them.
import { ensureLayer, ensureServerLayer } from './layer.ts';

export default async function setup(): Promise<void> {
  await ensureLayer('x86_64');
  await ensureServerLayer('x86_64');
}
