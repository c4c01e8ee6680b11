// The local moto server stops whole, also under a wrapper that forks instead of exec'ing (faketime,
// as test/cli/status.test.ts uses it): a suite run must leave no server process behind.
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { startMotoServer } from '../../scripts/local-services.ts';

function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie (exited, not yet reaped by a parent that is not us) counts as gone.
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

it('stop() ends the server run under faketime (which forks Python) and leaves no process', async () => {
  const moto = await startMotoServer({ wrap: ['faketime', '-f', '+0'] });
  const wrapper = moto.child.pid!;
  // Every process below the wrapper: faketime's child, and whatever it started.
  const tree: number[] = [];
  for (let next = children(wrapper); next.length > 0; next = next.flatMap(children)) tree.push(...next);
  expect(tree.length).toBeGreaterThan(0);
  expect((await fetch(`${moto.endpoint}/moto-api/reset`, { method: 'POST' })).ok).toBe(true);
  await moto.stop();
  const deadline = Date.now() + 10_000;
  while (tree.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  expect(tree.filter(alive)).toEqual([]);
});
