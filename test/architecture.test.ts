// The rules of docs/architecture.md that the code's imports can show, held by the suite (CI runs
// `npm test`, not `npm run lint`).
import { fileURLToPath } from 'node:url';
import { parseCircular, parseDependencyTree } from 'dpdm';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SHIPPED = ['engine', 'lambda', 'cli', 'infra', 'layers', 'scripts', 'bench'].map((folder) => `${folder}/**/*.ts`);

describe('imports', () => {
  it('form no circle in the shipped code, type-only imports included', async () => {
    const tree = await parseDependencyTree(SHIPPED, { context: ROOT, transform: false, skipDynamicImports: false });
    expect(Object.keys(tree).length).toBeGreaterThan(50);
    expect(parseCircular(tree)).toEqual([]);
  });

  it('keep the engine free of any front door\'s presentation: Powertools is the Lambda\'s (lambda/powertools.ts)', async () => {
    const tree = await parseDependencyTree(['engine/**/*.ts'], { context: ROOT, transform: false, skipDynamicImports: false });
    const powertools = Object.entries(tree).filter(([, deps]) => (deps ?? []).some((d) => d.issuer && d.request.startsWith('@aws-lambda-powertools/'))).map(([file]) => file);
    expect(powertools).toEqual([]);
  });
});
