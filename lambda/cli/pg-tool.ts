/**
 * Where the CLI finds pg_restore (and pg_dump for `run`) off Lambda: PG_DUMP_BIN's siblings, else a
 * layer mounted at /opt, else the layer built in this repository (npm run build:layer), else the
 * program of that name on PATH. The PATH one is often older than 18 and cannot read pg_dump 18
 * archives; restore's error message says so when it happens.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_LAYER_ROOT, findLoader, layerCommand, resolvePgTool, type PgTool, type SpawnCommand } from '../pg-tools.ts';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** The layer architecture matching this machine. */
export function hostLayerArch(arch: string = process.arch): 'x86_64' | 'arm64' {
  return arch === 'arm64' ? 'arm64' : 'x86_64';
}

/** The layer built in this repository for this machine's architecture. */
export function repoLayerRoot(): string {
  return join(REPO_ROOT, 'layers', 'pg-dump', 'dist', hostLayerArch());
}

function hasLayerTool(root: string, tool: PgTool): boolean {
  return findLoader(root) !== undefined && existsSync(join(root, 'libexec', tool));
}

export function resolveLocalPgTool(
  tool: PgTool,
  options: { readonly pgDumpBin?: string | undefined; readonly layerRoots?: readonly string[] } = {},
): SpawnCommand {
  if (options.pgDumpBin) return resolvePgTool(tool, { pgDumpBin: options.pgDumpBin });
  for (const root of options.layerRoots ?? [DEFAULT_LAYER_ROOT, repoLayerRoot()]) {
    if (hasLayerTool(root, tool)) return layerCommand(root, tool);
  }
  return { file: tool, args: [] };
}
