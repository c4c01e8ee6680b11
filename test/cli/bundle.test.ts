/**
 * The CLI runs as a prebuilt bundle (scripts/cli-bundle.mjs → dist/cli), never stale, and it loads
 * a command's code only when that command runs.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as esbuild from 'esbuild';
import { describe, expect, it } from 'vitest';
import { CLI_BUNDLE_INPUTS, cliBuildOptions, ensureCliBundle, REPO_ROOT, staleReason, type RecordedInput } from '../../scripts/cli-bundle.mjs';
import { baseEnv, runCli } from '../support/cli.ts';

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** What esbuild reads for the bundle in today's tree, and its outputs (without writing them). */
async function buildToday(): Promise<esbuild.Metafile> {
  const outdir = mkdtempSync(join(tmpdir(), 'pgs3b-cli-bundle-'));
  try {
    const result = await esbuild.build({ ...cliBuildOptions(), outdir, write: false, logLevel: 'silent' });
    return result.metafile;
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

describe('the CLI bundle', () => {
  it('matches the sources: what the bundle records is exactly what esbuild reads today, byte for byte', async () => {
    const run = await runCli(['--version'], baseEnv());
    expect(run.code).toBe(0);
    expect(staleReason()).toBeUndefined();
    const recorded = (JSON.parse(readFileSync(CLI_BUNDLE_INPUTS, 'utf8')) as { inputs: Record<string, RecordedInput> }).inputs;
    const today = Object.keys((await buildToday()).inputs);
    expect(Object.keys(recorded).sort()).toEqual([...today, 'package.json'].sort());
    for (const [path, input] of Object.entries(recorded)) expect({ path, sha256: sha256(join(REPO_ROOT, path)) }).toEqual({ path, sha256: input.sha256 });
  });

  it('loads no command, engine pipeline or AWS client before argv names a command', async () => {
    await ensureCliBundle();
    const meta = await buildToday();
    const outputs = Object.entries(meta.outputs);
    const mainChunk = outputs.find(([, o]) => o.entryPoint === 'cli/main.ts');
    expect(mainChunk, 'cli/main.ts is a chunk of its own (the entry imports it on demand)').toBeDefined();
    // What `--help` evaluates: the main chunk and everything it imports statically.
    const loaded = new Set<string>();
    const visit = (file: string) => {
      if (loaded.has(file)) return;
      loaded.add(file);
      for (const i of meta.outputs[file]?.imports ?? []) if (i.kind === 'import-statement' && !i.external) visit(i.path);
    };
    visit(mainChunk![0]);
    const inputs = [...loaded].flatMap((f) => Object.keys(meta.outputs[f]?.inputs ?? {}));
    expect(inputs).toContain('cli/main.ts');
    expect(inputs).toContain('node_modules/commander/lib/command.js');
    const eager = inputs.filter((i) => /^cli\/(run|invoke|list|restore|verify|prune|doctor|alert|context)\.ts$|^engine\/(backup|restore|store|check)\/|@aws-sdk|@smithy|powertools|node_modules\/pg\//.test(i));
    expect(eager).toEqual([]);
  });
});
